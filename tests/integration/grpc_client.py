#!/usr/bin/python3
"""A gRPC client for a running `strata serve`, used by the integration tests.

Generates the Python stubs from the repository's proto/ at start-up into a temporary folder, with
Debian's protoc and grpc_python_plugin (python3-grpc-tools' bundled protoc predates proto3
`optional`). Run it with /usr/bin/python3: a pyenv python3 lacks Debian's python3-grpcio.

  grpc_client.py --port P generate --prompt TEXT [--max-tokens N] [--temperature T] [--n N] ...
      one JSON object per response message on stdout (proto field names)
  grpc_client.py --port P models      the ListModels response as one JSON object
  grpc_client.py --port P health [--service NAME]   SERVING | NOT_SERVING | ...

On an RPC error: prints the status code name and message on stderr, and
{"error": {"code": NAME, "message": ...}} on stdout, and exits 1. Bad usage exits 2.
"""

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO, "proto")


def generate_stubs(out_dir):
    """Compiles generation.proto and the health proto into out_dir and imports them.

    The health proto is copied to a top-level file name: its natural module path grpc/health/v1
    would be shadowed by the installed `grpc` package. The service keeps its full name
    grpc.health.v1.Health, which is what goes on the wire.
    """
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    shutil.copy(os.path.join(PROTO_DIR, "grpc", "health", "v1", "health.proto"),
                os.path.join(out_dir, "strata_health.proto"))
    for include, proto in ((PROTO_DIR, "strata/v1/generation.proto"),
                           (out_dir, "strata_health.proto")):
        subprocess.run([protoc, "-I", include, f"--python_out={out_dir}",
                        f"--grpc_out={out_dir}", f"--plugin=protoc-gen-grpc={plugin}", proto],
                       check=True)
    sys.path.insert(0, out_dir)
    return (importlib.import_module("strata.v1.generation_pb2"),
            importlib.import_module("strata.v1.generation_pb2_grpc"),
            importlib.import_module("strata_health_pb2"),
            importlib.import_module("strata_health_pb2_grpc"))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--api-key", help="sent as 'authorization: Bearer KEY'")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    prompt = g.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="prompt text")
    prompt.add_argument("--token-ids", help="comma-separated prompt token ids")
    prompt.add_argument("--chat", help="a user message, rendered by the chat template")
    prompt.add_argument("--no-prompt", action="store_true", help="send no prompt (error tests)")
    g.add_argument("--model", default="")
    g.add_argument("--max-tokens", type=int)
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-p", type=float)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--seed", type=int)
    g.add_argument("--n", type=int)
    g.add_argument("--logprobs", type=int)
    g.add_argument("--stop", action="append", default=[])
    g.add_argument("--ignore-eos", action="store_true")
    g.add_argument("--kv-policy", default="")
    g.add_argument("--slo-class", default="")
    g.add_argument("--priority", type=int, default=0)
    g.add_argument("--cache-salt")
    h = sub.add_parser("health")
    h.add_argument("--service", default="", help='"" = the whole server')
    sub.add_parser("models")
    return p.parse_args(argv)


def to_dict(msg):
    """The message as JSON-ready Python values with integers kept as numbers (proto3's JSON
    mapping would turn int64 into strings). Unset message fields are left out, scalars kept."""
    out = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.label == field.LABEL_REPEATED:
            out[field.name] = [to_dict(v) if field.message_type else v for v in value]
        elif field.message_type:
            if msg.HasField(field.name):
                out[field.name] = to_dict(value)
        else:
            out[field.name] = value
    return out


def build_request(pb, a):
    r = pb.GenerateRequest(model=a.model, top_k=a.top_k, stop=a.stop, ignore_eos=a.ignore_eos,
                           kv_policy=a.kv_policy, slo_class=a.slo_class, priority=a.priority)
    if a.prompt is not None:
        r.text = a.prompt
    elif a.token_ids is not None:
        r.token_ids.ids.extend(int(t) for t in a.token_ids.split(",") if t.strip())
    elif a.chat is not None:
        r.messages.add(role="user", content=a.chat)
    for field in ("max_tokens", "temperature", "top_p", "seed", "n", "logprobs", "cache_salt"):
        value = getattr(a, field)
        if value is not None:
            setattr(r, field, value)
    return r


def main(argv):
    a = parse_args(argv)
    import grpc  # after argparse: --help works without python3-grpcio

    with tempfile.TemporaryDirectory(prefix="strata-grpc-") as tmp:
        pb, pb_grpc, health_pb, health_grpc = generate_stubs(tmp)
        metadata = [("authorization", f"Bearer {a.api_key}")] if a.api_key else []
        with grpc.insecure_channel(f"{a.host}:{a.port}") as channel:
            try:
                if a.command == "health":
                    stub = health_grpc.HealthStub(channel)
                    resp = stub.Check(health_pb.HealthCheckRequest(service=a.service),
                                      timeout=a.timeout, metadata=metadata)
                    print(health_pb.HealthCheckResponse.ServingStatus.Name(resp.status))
                elif a.command == "models":
                    stub = pb_grpc.GenerationStub(channel)
                    resp = stub.ListModels(pb.ListModelsRequest(), timeout=a.timeout,
                                           metadata=metadata)
                    print(json.dumps(to_dict(resp)))
                else:
                    stub = pb_grpc.GenerationStub(channel)
                    for resp in stub.Generate(build_request(pb, a), timeout=a.timeout,
                                              metadata=metadata):
                        print(json.dumps(to_dict(resp)), flush=True)
            except grpc.RpcError as e:
                name = e.code().name
                print(json.dumps({"error": {"code": name, "message": e.details()}}), flush=True)
                print(f"{name}: {e.details()}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # the reader (e.g. `head`) stopped early: not an RPC error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        sys.exit(0)
