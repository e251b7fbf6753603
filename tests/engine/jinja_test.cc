// The chat-template interpreter (engine/jinja_*.h) construct by construct. Expected strings are
// what Python's jinja2 3.1 gives with trim_blocks=True, lstrip_blocks=True (Hugging Face's
// environment).
#include <gtest/gtest.h>

#include <random>

#include "engine/chat_template.h"
#include "engine/jinja_eval.h"
#include "engine/jinja_parser.h"

namespace strata::engine::jinja {
namespace {

absl::StatusOr<std::string> Render(std::string_view source, ValueDict context = {},
                                   const RenderLimits& limits = {}) {
  ASSIGN_OR_RETURN(Body body, ParseTemplate(source));
  return RenderTemplate(body, std::move(context), limits);
}

// The output, or "ERROR: <message>" so a failure shows in the expectation.
std::string R(std::string_view source, ValueDict context = {}) {
  absl::StatusOr<std::string> out = Render(source, std::move(context));
  if (!out.ok()) return "ERROR: " + std::string(out.status().message());
  return *out;
}

ValueDict Messages() {
  ValueList list;
  for (auto [role, content] : {std::pair{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}}) {
    ValueDict m;
    m.Set("role", Value(role));
    m.Set("content", Value(content));
    list.emplace_back(std::move(m));
  }
  ValueDict ctx;
  ctx.Set("messages", Value(std::move(list)));
  return ctx;
}

TEST(JinjaTest, PrintsTextAndExpressions) {
  EXPECT_EQ(R("Hello {{ 'world' }}!"), "Hello world!");
  EXPECT_EQ(R("{{ 1 }} {{ 1.5 }} {{ 1e3 }} {{ none }} {{ True }} {{ false }}"),
            "1 1.5 1000.0 None True False");
  EXPECT_EQ(R("{{ [1, 'a', none, true] }} {{ {'a': 1, 'b': 'x'} }}"),
            "[1, 'a', None, True] {'a': 1, 'b': 'x'}");
  EXPECT_EQ(R(R"J({{ 'it\'s' }}|{{ "tab\there" }}|{{ "\u00e9\x41" }}|{{ 'a' "b" }})J"),
            "it's|tab\there|\xc3\xa9\x41|ab");
  EXPECT_EQ(R("{# a comment #}x{# another\nline #}y"), "xy");
}

TEST(JinjaTest, TrimBlocksAndLstripBlocks) {
  EXPECT_EQ(R("{% if true %}\nyes\n{% endif %}\nafter"), "yes\nafter");
  EXPECT_EQ(R("  {% if true %}x{% endif %}"), "x");
  EXPECT_EQ(R("a\n    {% if true %}\n    b\n    {% endif %}\nc"), "a\n    b\nc");
  EXPECT_EQ(R("  {{ 'v' }}"), "  v");                // lstrip_blocks leaves {{ }} alone
  EXPECT_EQ(R("a  {% if true %}b{% endif %}"), "a  b");  // tag not first on its line
  EXPECT_EQ(R("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(R("{% if true +%}\nx{% endif %}"), "\nx");
  EXPECT_EQ(R("  {# c #}\nx"), "x");
  EXPECT_EQ(R("x\n"), "x");  // keep_trailing_newline=False drops one
  EXPECT_EQ(R("x\n\n"), "x\n");
  EXPECT_EQ(R("x\r\ny"), "x\ny");
}

TEST(JinjaTest, WhitespaceControl) {
  EXPECT_EQ(R("a   {{- 'b' -}}   c"), "abc");
  EXPECT_EQ(R("a\n\n{%- if true -%}\n\n b {%- endif %}"), "ab");
  EXPECT_EQ(R("a {#- c -#} b"), "ab");
  EXPECT_EQ(R("{{ 'x' }}\n{{ 'y' }}"), "x\ny");  // trim_blocks does not apply to }}
  EXPECT_EQ(R("{% for i in [1, 2] %}\n  {{- i }}\n{% endfor %}"), "1\n2\n");
}

TEST(JinjaTest, IfElifElse) {
  EXPECT_EQ(R("{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}"), "c");
  EXPECT_EQ(R("{% if none %}a{% else %}d{% endif %}"), "d");
  EXPECT_EQ(R("{{ 'a' if false else 'b' }}{{ 'c' if true }}[{{ 'c' if false }}]"), "bc[]");
}

TEST(JinjaTest, ForLoopVariables) {
  EXPECT_EQ(R("{% for x in [7, 8, 9] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}"
              "{{ loop.last }}{{ loop.length }}{{ loop.revindex }}|{% endfor %}"),
            "10TrueFalse33|21FalseFalse32|32FalseTrue31|");
  EXPECT_EQ(R("{% for x in [1, 2, 3] %}{{ loop.cycle('a', 'b') }}{{ loop.previtem }}{% endfor %}"),
            "ab1a2");
  EXPECT_EQ(R("{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} "
              "{% endfor %}{% endfor %}"),
            "1x1 1y2 2x1 2y2 ");
}

TEST(JinjaTest, ForElseFilterUnpackAndControl) {
  EXPECT_EQ(R("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in range(10) if x is odd %}{{ x }}{{ ',' if not loop.last }}{% endfor %}"),
            "1,3,5,7,9");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
  EXPECT_EQ(R("{% for k, v in {'b': 1, 'a': 2}|dictsort %}{{ k }}{{ v }}{% endfor %}"), "a2b1");
  EXPECT_EQ(R("{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}"), "xy");
  EXPECT_EQ(R("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}"
              "{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
            "013");
  EXPECT_EQ(R("{% for x in nothing %}a{% endfor %}ok"), "ok");  // Undefined iterates as empty
}

TEST(JinjaTest, ScopingSetAndNamespace) {
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}"), "21");
  EXPECT_EQ(R("{% if true %}{% set y = 'in-if' %}{% endif %}{{ y }}"), "in-if");
  // A loop body's `set` does not survive into the next iteration.
  EXPECT_EQ(R("{% for i in range(2) %}{% if i == 0 %}{% set seen = 1 %}{% endif %}[{{ seen }}]"
              "{% endfor %}"),
            "[1][]");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}"
              "{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(R("{% set ns = namespace() %}{% set ns.found = true %}{{ ns.found }}"), "True");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(R("{% set x %}a{{ 1 }}b{% endset %}[{{ x }}]"), "[a1b]");
  EXPECT_EQ(R("{% with a = 1 %}{{ a }}{% endwith %}{{ a is defined }}"), "1False");
  EXPECT_EQ(R("{% set messages = messages[1:] %}{{ messages|length }}", Messages()), "2");
}

TEST(JinjaTest, Macros) {
  EXPECT_EQ(R("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
              "{{ greet('Bob') }} {{ greet('Al', punct='?') }}"),
            "Hi Bob! Hi Al?");
  EXPECT_EQ(R("{% set g = 'G' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}"), "G");
  EXPECT_EQ(R("{% macro m(x) %}{{ x is defined }}{% endmacro %}{{ m() }}"), "False");
}

TEST(JinjaTest, GenerationTagRendersItsBody) {
  // transformers' AssistantTracker `{% generation %}` only marks assistant spans.
  EXPECT_EQ(R("{% generation %}\nA{% set x = 1 %}{% endgeneration %}[{{ x }}]"), "A[]");
}

TEST(JinjaTest, Operators) {
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 4 / 2 }} "
              "{{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 1.5 + 1 }} {{ 10 - 2 - 3 }}"),
            "3 -4 1 2 3.5 2.0 1024 7 9 2.5 5");
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none ~ nothing }} {{ 'ab' * 3 }} {{ 'a' + 'b' }} {{ [1] + [2] }}"),
            "a1None ababab ab [1, 2]");
  EXPECT_EQ(R("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 'b' >= 'a' }}"),
            "True False True True True");
  EXPECT_EQ(R("{{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 in nothing }}"),
            "True True True False");
  EXPECT_EQ(R("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not none }} {{ not 1 == 2 }} {{ -3|abs }}"),
            "x y True True 3");
}

TEST(JinjaTest, Tests) {
  EXPECT_EQ(R("{% set x = 1 %}{{ x is defined }} {{ y is defined }} {{ y is undefined }} "
              "{{ none is none }} {{ 'a' is string }} {{ 1 is number }} {{ 1 is not string }}"),
            "True False True True True True True");
  EXPECT_EQ(R("{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }} "
              "{{ 'a' is equalto 'a' }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }}"),
            "True True True False True True True True");
  EXPECT_EQ(R("{{ {} is mapping }} {{ [] is iterable }} {{ 'ab' is sequence }} {{ 1 is iterable }} "
              "{{ true is true }} {{ false is false }} {{ 1 is true }}"),
            "True True True False True True False");
}

TEST(JinjaTest, SubscriptsSlicesAndAttributes) {
  EXPECT_EQ(R("{% set m = [1, 2, 3, 4] %}{{ m[0] }} {{ m[-1] }} {{ m[1:] }} {{ m[:2] }} "
              "{{ m[::-1] }} {{ m[::2] }} {{ m[10:] }} [{{ m[9] }}]"),
            "1 4 [2, 3, 4] [1, 2] [4, 3, 2, 1] [1, 3] [] []");
  EXPECT_EQ(R("{{ 'h\xc3\xa9llo'[1] }} {{ 'abc'[::-1] }} {{ 'abcdef'[1:-1] }}"), "\xc3\xa9 cba bcde");
  EXPECT_EQ(R("{{ messages[0].role }} {{ messages[1]['content'] }} [{{ messages[0].nope }}]",
              Messages()),
            "system U1 []");
}

TEST(JinjaTest, Undefined) {
  EXPECT_EQ(R("[{{ nope }}] {{ nope is defined }} {{ nope|default('d') }}"), "[] False d");
  EXPECT_EQ(R("{{ nope.attr }}"), "ERROR: chat template line 1: 'nope' is undefined");
  EXPECT_EQ(R("\n{{ messages[0].nope.x }}", Messages()),
            "ERROR: chat template line 2: 'dict object' has no attribute 'nope'");
  EXPECT_EQ(R("{{ nope + 1 }}"), "ERROR: chat template line 1: 'nope' is undefined");
  EXPECT_EQ(R("{{ nope() }}"), "ERROR: chat template line 1: 'nope' is undefined");
  EXPECT_EQ(R("{{ messages[5].role }}", Messages()),
            "ERROR: chat template line 1: list object has no element 5");
  EXPECT_EQ(R("[{{ none.x }}]{{ none.x.y }}"), "ERROR: chat template line 1: 'None' has no attribute 'x'");
}

TEST(JinjaTest, StringFilters) {
  EXPECT_EQ(R("[{{ '  a b \n'|trim }}] [{{ 'xxaxx'|trim('x') }}]"), "[a b] [a]");
  EXPECT_EQ(R("{{ 'hello wORLD'|upper }} {{ 'HeLLo'|lower }} {{ 'hello big-world'|title }} "
              "{{ 'hELLO'|capitalize }}"),
            "HELLO WORLD hello Hello Big-World Hello");
  EXPECT_EQ(R("{{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }}"), "bbb bba");
  EXPECT_EQ(R(R"J({{ '<a href="x">&\''|e }} {{ '<b>'|escape }} {{ '<b>'|safe }})J"),
            "&lt;a href=&#34;x&#34;&gt;&amp;&#39; &lt;b&gt; <b>");
  EXPECT_EQ(R("{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n'|indent }}"),
            "a\n  b\n\n  c|  a\n  b|a\n");
}

TEST(JinjaTest, ValueFilters) {
  EXPECT_EQ(R("{{ [1, 2, 3]|length }} {{ 'h\xc3\xa9llo'|length }} {{ {'a': 1}|count }} "
              "{{ nothing|length }}"),
            "3 5 1 0");
  EXPECT_EQ(R("{{ nope|default('x') }} [{{ ''|default('y') }}] {{ ''|default('z', true) }} "
              "{{ nope|d('w') }}"),
            "x [] z w");
  EXPECT_EQ(R("{{ [1, 2, 3]|first }}{{ [1, 2, 3]|last }}{{ 'abc'|first }}"), "13a");
  EXPECT_EQ(R("{{ ['a', 'b']|join(', ') }} {{ [1, 2]|join }} "
              "{{ [{'n': 'x'}, {'n': 'y'}]|join('-', attribute='n') }}"),
            "a, b 12 x-y");
  EXPECT_EQ(R("{{ 12|string ~ 'x' }} {{ '42'|int + 1 }} {{ 'x'|int }} {{ '3.9'|int }} "
              "{{ 2|float }} {{ 'bad'|float }} {{ ' 7 '|int }}"),
            "12x 43 0 3 2.0 0.0 7");
  EXPECT_EQ(R("{{ 'ab'|list }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} "
              "{{ 2.1|round(0, 'ceil') }} {{ 3|round }} {{ -2.5|abs }}"),
            "['a', 'b'] 2.0 4.0 2.67 3.0 3 2.5");
  EXPECT_EQ(R("{{ [3, 1, 2]|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', 'c']|sort }} "
              "{{ [1, 2, 1, 3]|unique|list }} {{ 'abc'|reverse }} {{ [1, 2]|reverse|list }}"),
            "[1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] [1, 2, 3] cba [2, 1]");
  EXPECT_EQ(R("{{ [{'n': 2}, {'n': 1}]|sort(attribute='n')|map(attribute='n')|list }} "
              "{{ [1, 2, 3]|sum }} {{ [4, 2, 9]|min }} {{ [4, 2, 9]|max }}"),
            "[1, 2] 6 2 9");
}

TEST(JinjaTest, ToJsonAndItems) {
  EXPECT_EQ(R(R"J({{ {'a': [1, 2.5, none, true], 'b': 'é"\n'}|tojson }})J"),
            R"J({"a": [1, 2.5, null, true], "b": "é\"\n"})J");
  EXPECT_EQ(R("{{ {'a': [1], 'b': {}}|tojson(indent=2) }}"),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
  EXPECT_EQ(R("{% for k, v in {'x': 1}|items %}{{ k }}{{ v }}{% endfor %}"), "x1");
  EXPECT_EQ(R("{{ nope|tojson }}"),
            "ERROR: chat template line 1: tojson: object of type 'Undefined' is not JSON "
            "serializable");
}

TEST(JinjaTest, SelectRejectMap) {
  ValueDict ctx = Messages();
  EXPECT_EQ(R("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} "
              "{{ messages|rejectattr('role', 'equalto', 'user')|map(attribute='role')|join(',') }}",
              ctx),
            "['U1'] system,assistant");
  EXPECT_EQ(R("{{ ['a', 'b']|map('upper')|join }} {{ [0, 1, 2]|select|list }} "
              "{{ [1, 2, 3, 4]|reject('even')|list }} {{ [1, 5, 3]|select('gt', 2)|list }}"),
            "AB [1, 2] [1, 3] [5, 3]");
  EXPECT_EQ(R("{{ [{'a': {'b': 1}}, {'a': {'b': 0}}]|selectattr('a.b')|list|length }}"), "1");
}

TEST(JinjaTest, StringAndDictMethods) {
  EXPECT_EQ(R("{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ ' a'.lstrip() }}|"
              "{{ 'a '.rstrip() }}|{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith(('x', 'lo')) }}|"
              "{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|"
              "{{ 'aXa'.replace('a', 'b') }}|{{ \"they're bill's\".title() }}"),
            "x|hi|a|a|True|True|['a', 'b', '', 'c']|['a', 'b']|HIhi|bXb|They'Re Bill'S");
  EXPECT_EQ(R("{{ '  a b  '.split(none, 1) }} {{ 'a b c'.split(' ', 1) }} {{ 'abcabc'.find('c') }}"),
            "['a', 'b  '] ['a', 'b c'] 2");
  EXPECT_EQ(R("{% set d = {'a': 1} %}{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} "
              "{{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list|length }}"),
            "1 None 5 ['a'] [1] 1");
  EXPECT_EQ(R("{{ [1].append(2) }}"),
            "ERROR: chat template line 1: unsupported method 'append' of 'list object'");
}

TEST(JinjaTest, ParseErrorsNameConstructAndLine) {
  auto error = [](std::string_view src) {
    absl::StatusOr<Body> body = ParseTemplate(src);
    return body.ok() ? std::string("OK") : std::string(body.status().message());
  };
  EXPECT_EQ(error("a\nb\n{% if x"), "chat template line 3: unterminated tag '{%'");
  EXPECT_EQ(error("{{ x"), "chat template line 1: unterminated tag '{{'");
  EXPECT_EQ(error("{# never closed"), "chat template line 1: unterminated comment '{#'");
  EXPECT_EQ(error("x\n{{ y|wordwrap }}"), "chat template line 2: unsupported filter 'wordwrap'");
  EXPECT_EQ(error("{% include 'x.jinja' %}"), "chat template line 1: unsupported tag 'include'");
  EXPECT_EQ(error("{{ x is foo }}"), "chat template line 1: unsupported test 'foo'");
  EXPECT_EQ(error("{% if x %}a"), "chat template line 1: unclosed 'if' block (expected 'endif')");
  EXPECT_EQ(error("\n{% endfor %}"), "chat template line 2: unexpected tag 'endfor'");
  EXPECT_EQ(error("{{ 'abc }}"), "chat template line 1: unterminated string literal");
  EXPECT_EQ(error("{{ 1 + }}"), "chat template line 1: unexpected '}}'");
  EXPECT_EQ(error("{% for x in y recursive %}{% endfor %}"),
            "chat template line 1: unsupported for-loop option 'recursive'");
}

TEST(JinjaTest, RuntimeErrors) {
  EXPECT_EQ(R("{{ 1 / 0 }}"), "ERROR: chat template line 1: division by zero");
  EXPECT_EQ(R("{{ 'a' + 1 }}"),
            "ERROR: chat template line 1: unsupported operand type(s) for +: 'str' and 'int'");
  EXPECT_EQ(R("{{ 'x' * 1000000000 }}"), "ERROR: chat template line 1: repetition result too large");
  EXPECT_EQ(R("{{ 9223372036854775807 + 1 }}"), "ERROR: chat template line 1: integer overflow");
  EXPECT_EQ(R("{% break %}"), "ERROR: chat template line 1: 'break' outside a loop");
  EXPECT_EQ(R("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"),
            "ERROR: chat template line 1: macro calls nested deeper than 64");
}

TEST(JinjaTest, RunawayLoopsAndOutputAreCapped) {
  RenderLimits small;
  small.max_iterations = 1000;
  absl::StatusOr<std::string> out =
      Render("{% for i in range(100) %}\n{% for j in range(100) %}{% endfor %}{% endfor %}", {},
             small);
  EXPECT_EQ(out.status().message(), "chat template line 2: loop iteration limit (1000) exceeded");

  // Nested loops count every inner iteration against one budget; the default budget is 1M.
  EXPECT_EQ(RenderLimits{}.max_iterations, 1000000);
  out = Render("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
               "{% endfor %}{% endfor %}{% endfor %}",
               {}, small);
  EXPECT_EQ(out.status().message(), "chat template line 1: loop iteration limit (1000) exceeded");

  out = Render("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}");
  EXPECT_EQ(out.status().message(), "chat template line 1: output larger than 4194304 bytes");
  out = Render("{{ range(10000000) }}");
  EXPECT_EQ(out.status().message(), "chat template line 1: range() longer than 1000000 items");
}

TEST(JinjaTest, DeepNestingIsAnErrorNotACrash) {
  std::string chain = "{{ 1", long_tag = "{{ 1", parens = "{{ ", ifs;
  for (int i = 0; i < 900; ++i) chain += " ~ 1";
  for (int i = 0; i < 2000; ++i) long_tag += " + 1";
  EXPECT_EQ(R(chain + " }}"), std::string(901, '1'));
  EXPECT_EQ(R(long_tag + " }}"), "ERROR: chat template line 1: tag longer than 2000 tokens");
  parens += std::string(300, '(') + "1" + std::string(300, ')') + " }}";
  EXPECT_EQ(R(parens), "ERROR: chat template line 1: expression nested too deeply");
  for (int i = 0; i < 300; ++i) ifs += "{% if true %}";
  EXPECT_EQ(R(ifs), "ERROR: chat template line 1: expression nested too deeply");
  std::string recursive = "{% macro f() %}{{ f()";  // f() is the leaf of a 100-deep tree
  for (int i = 0; i < 100; ++i) recursive += " + 1";
  recursive += " }}{% endmacro %}{{ f() }}";
  EXPECT_EQ(R(recursive), "ERROR: chat template line 1: template nested too deeply");
}

TEST(JinjaTest, RaiseExceptionAndStrftimeThroughChatTemplate) {
  auto t = ChatTemplate::Parse("{{ raise_exception('Bad roles: ' ~ messages[0].role) }}");
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<std::string> out = (*t)->Render({{"system", "x"}}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "Bad roles: system");

  t = ChatTemplate::Parse("{{ strftime_now('%Y')|length }} {{ tools }} {{ bos_token }}");
  ASSERT_TRUE(t.ok()) << t.status();
  out = (*t)->Render({}, {.add_generation_prompt = true, .bos_token = "<s>", .eos_token = ""});
  EXPECT_EQ(out.value_or("error"), "4 None <s>");
}

// Random truncations and byte mutations of template sources must give an error or an output,
// never a crash or a hang.
TEST(JinjaTest, FuzzedSourcesFailCleanly) {
  const std::vector<std::string> seeds = {
      "{% for m in messages if m.role != 'x' %}{{ loop.index ~ m['content']|trim }}"
      "{% else %}none{% endfor %}",
      "{%- set ns = namespace(i=0) -%}{%- for m in messages[1:] -%}{% set ns.i = ns.i + 1 %}"
      "{%- endfor -%}{{ ns.i if ns.i > 1 else (messages|tojson(indent=2)) }}",
      "{% macro f(a, b='x') %}{{ a ~ b }}{% endmacro %}{{ f(1) }}{{ [1, 2][::-1]|join(',') }}"
      "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no') }}{% endif %}",
      "{{ {'a': 'b'}.items()|list }}{# c #}{{ 'x'.split('y') }}{{ messages|selectattr('role',"
      " 'equalto', 'user')|map(attribute='content')|first }}"};
  std::mt19937 rng(1234);
  const std::string alphabet = "{}%#-+|()[].,:'\"~*/ \nabcxyz0123456789=<>!";
  int parsed = 0, rendered = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string src = seeds[iter % seeds.size()];
    if (iter % 2 == 0) {
      src.resize(rng() % (src.size() + 1));
    } else {
      for (int k = 0; k < 3; ++k) src[rng() % src.size()] = alphabet[rng() % alphabet.size()];
    }
    absl::StatusOr<Body> body = ParseTemplate(src);
    if (!body.ok()) {
      EXPECT_EQ(std::string(body.status().message()).rfind("chat template line ", 0), 0u)
          << src << " -> " << body.status();
      continue;
    }
    ++parsed;
    RenderLimits limits;
    limits.max_iterations = 10000;
    limits.max_output = 1 << 16;
    if (RenderTemplate(*body, Messages(), limits).ok()) ++rendered;
  }
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rendered, 50);
}

}  // namespace
}  // namespace strata::engine::jinja
