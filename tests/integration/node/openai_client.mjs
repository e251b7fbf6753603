// Drives a live strata daemon with the official `openai` npm package, as a user's application
// would, and prints one JSON object of what it saw for tests/integration/openai_client_test.cc.
//   node openai_client.mjs BASE_URL API_KEY PROMPT
import OpenAI from 'openai';

const [baseURL, apiKey, prompt] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const out = {};

async function errorOf(promise) {
  try {
    await promise;
    return { status: 0 };
  } catch (e) {
    return { status: e.status ?? -1, name: e.constructor.name, param: e.param ?? null,
             type: e.type ?? null, message: e.message };
  }
}

const completion = await client.completions.create({
  model: 'stories', prompt, max_tokens: 48, temperature: 0,
});
out.completion_text = completion.choices[0].text;
out.completion_usage = completion.usage;

const chat = await client.chat.completions.create({
  model: 'stories', messages: [{ role: 'user', content: prompt }], max_tokens: 48,
  temperature: 0, logprobs: true, top_logprobs: 2,
});
out.chat_message = chat.choices[0].message;
out.chat_logprobs = chat.choices[0].logprobs.content.slice(0, 3);

const sampled = await client.completions.create({
  model: 'stories', prompt, max_tokens: 8, temperature: 1, n: 2, seed: 42, logprobs: 2,
});
out.n2_indices = sampled.choices.map((c) => c.index);
out.n2_token_counts = sampled.choices.map((c) => c.logprobs.tokens.length);
out.n2_usage = sampled.usage;

let chatText = '';
let chatUsage = null;
let chunks = 0;
const stream = await client.chat.completions.create({
  model: 'stories', messages: [{ role: 'user', content: prompt }], max_completion_tokens: 48,
  temperature: 0, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  chunks += 1;
  if (chunk.choices.length > 0) chatText += chunk.choices[0].delta.content ?? '';
  if (chunk.usage) chatUsage = chunk.usage;
}
out.chat_text = chatText;
out.chat_usage = chatUsage;
out.chat_chunks = chunks;

// The client library's own abort: the daemon must free the request.
const aborted = await client.completions.create({
  model: 'stories', prompt, max_tokens: 400, temperature: 0, stream: true,
});
let abortedChunks = 0;
for await (const chunk of aborted) {
  abortedChunks += chunk.choices.length;
  if (abortedChunks >= 2) {
    aborted.controller.abort();
    break;
  }
}
out.aborted_chunks = abortedChunks;

out.models = (await client.models.list()).data.map((m) => m.id);
out.bad_max_tokens = await errorOf(client.completions.create({
  model: 'stories', prompt, max_tokens: 0,
}));
out.unknown_model = await errorOf(client.completions.create({ model: 'gpt-9', prompt }));
out.wrong_key = await errorOf(new OpenAI({ baseURL, apiKey: 'wrong-key-123', maxRetries: 0 })
  .models.list());

console.log(JSON.stringify(out));
