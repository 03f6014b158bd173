"""`python -m engine.serve`: serve one model to remote editors (msgpack frames over TCP).

Binds 127.0.0.1 by default; any other address needs a token (--token-file or ASTDIFFUSE_TOKEN).
Prints `listening on HOST:PORT` on stdout once it accepts connections (--port 0 picks a port).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import ssl
import sys
from pathlib import Path

from . import protocol as p

TOKEN_ENV = "ASTDIFFUSE_TOKEN"
MIN_TOKEN_CHARS = 16
GPU_MAX_BATCH = 16


class ServeError(Exception):
    """A setting the server cannot start with; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    limits = p.Limits()
    parser = argparse.ArgumentParser(
        prog="python -m engine.serve",
        description="Serve an astdiffuse model to editors on other machines: length-prefixed "
                    "msgpack frames over TCP (TLS optional), token authentication, dynamic "
                    "batching of concurrent requests. See docs/remote.md.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else needs a token)")
    parser.add_argument("--port", type=int, default=p.DEFAULT_PORT,
                        help=f"port (default {p.DEFAULT_PORT}; 0 picks a free one and prints it)")
    parser.add_argument("--model", help="model directory, or a published model pulled with "
                                        "`python -m engine pull NAME` (its short name or hub "
                                        "id); default: the shipped default model")
    parser.add_argument("--download", action="store_true",
                        help="pull --model from the hub first if it is not here yet")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--token-file", type=Path,
                        help=f"file holding the token clients must send (else ${TOKEN_ENV})")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: serve over TLS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="requests batched into one forward pass at most (default: "
                             f"{GPU_MAX_BATCH} on a GPU, 1 (no batching) on a CPU, where "
                             "docs/remote.md measured no gain from it)")
    parser.add_argument("--batch-window-ms", type=float, default=5.0,
                        help="how long a lone request waits for others to batch with "
                             "(default 5 ms)")
    parser.add_argument("--max-frame-bytes", type=int, default=limits.max_frame_bytes)
    parser.add_argument("--max-document-bytes", type=int, default=limits.max_document_bytes)
    parser.add_argument("--max-spans", type=int, default=limits.max_spans)
    parser.add_argument("--request-timeout", type=float, default=limits.request_timeout_s,
                        help="seconds a request may take, queueing included (default "
                             f"{limits.request_timeout_s:g})")
    parser.add_argument("--max-connections", type=int, default=limits.max_connections)
    parser.add_argument("--max-queued", type=int, default=limits.max_queued)
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def read_token(token_file: Path | None, host: str) -> str | None:
    """The token from --token-file or the environment; ServeError when binding beyond
    loopback without one, or when the file is unusable."""
    token = None
    if token_file is not None:
        try:
            token = token_file.expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ServeError(f"--token-file {token_file}: {err}") from None
        if not token:
            raise ServeError(f"--token-file {token_file} is empty")
    elif os.environ.get(TOKEN_ENV, "").strip():
        token = os.environ[TOKEN_ENV].strip()
    if token is None and not is_loopback(host):
        raise ServeError(f"refusing to bind {host} without a token: anyone who can reach it "
                         f"could use the model. Set {TOKEN_ENV} or pass --token-file (e.g. "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(32))' > "
                         "token`), or bind 127.0.0.1 and use an SSH tunnel")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        logging.getLogger(__name__).warning("the token has %d characters; use %d or more",
                                            len(token), MIN_TOKEN_CHARS)
    return token


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ServeError("TLS needs both --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as err:
        raise ServeError(f"cannot load the TLS certificate {cert} / key {key}: {err}") from None
    return context


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        limits = p.Limits(max_frame_bytes=args.max_frame_bytes,
                          max_document_bytes=args.max_document_bytes, max_spans=args.max_spans,
                          request_timeout_s=args.request_timeout,
                          max_connections=args.max_connections,
                          max_queued=args.max_queued).check()
        if not 0 <= args.port < 65536:
            raise ServeError(f"--port {args.port}: must be 0..65535")
        if args.max_batch is not None and args.max_batch < 1:
            raise ServeError("--max-batch must be at least 1")
        token = read_token(args.token_file, args.host)
        context = tls_context(args.tls_cert, args.tls_key)
    except (ServeError, ValueError) as err:
        print(f"engine.serve: {err}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args, limits, token, context))


async def _serve(args, limits: p.Limits, token: str | None, context) -> int:
    from ..errors import AstdiffuseError
    from ..infill import InfillEngine
    from .batcher import Batcher
    from .server import EngineServer, ServerInfo

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the server log
    print(f"engine.serve: loading {args.model or 'the default model'} on {args.device}",
          file=sys.stderr, flush=True)
    try:
        model = args.model
        if model is not None:
            from ..hub import locate

            model = await asyncio.to_thread(locate, model, download=args.download)
        engine = await asyncio.to_thread(InfillEngine.load, model, device=args.device)
    except (AstdiffuseError, OSError, ValueError, RuntimeError) as err:
        print(f"engine.serve: the model failed to load: {err}", file=sys.stderr)
        return 1
    max_batch = args.max_batch or (GPU_MAX_BATCH if engine.device.type == "cuda" else 1)
    batcher = Batcher(engine, max_batch=max_batch, max_queued=limits.max_queued,
                      window_s=args.batch_window_ms / 1000.0)
    info = ServerInfo(model=engine.name or "default", device=str(engine.device),
                      sampling_defaults=engine.sampling_defaults)
    server = EngineServer(batcher, info, token=token, limits=limits)
    try:
        listener = await server.start(args.host, args.port, ssl=context)
    except OSError as err:
        print(f"engine.serve: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    host, port = listener.sockets[0].getsockname()[:2]
    scheme = "astdiffuse+tls" if context else "astdiffuse"
    print(f"listening on {host}:{port} ({scheme}://{host}:{port}; model {info.model} on "
          f"{info.device}, batches of up to {max_batch}{', token required' if token else ''})",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    async with listener:
        await stop.wait()
    batcher.close()
    print("engine.serve: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
