"""`python -m lsp_server`: run the Language Server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lsp_server",
        description="astdiffuse Language Server: \"Diffuse this block\" (structural code infill "
                    "with a masked-diffusion model) for any LSP editor. Settings come from the "
                    "client (the astdiffuse section); see docs/lsp.md.")
    parser.add_argument("--version", action="version",
                        version=f"astdiffuse-lsp {__version__}")
    parser.add_argument("--stdio", action="store_true",
                        help="talk LSP over stdin/stdout (the default)")
    parser.add_argument("--tcp", metavar="HOST:PORT",
                        help="listen on a TCP address instead, e.g. 127.0.0.1:2087")
    parser.add_argument("--log-file", metavar="PATH",
                        help="write the server log to PATH (default: stderr)")
    return parser


def _address(text: str, parser: argparse.ArgumentParser) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        parser.error(f"--tcp {text!r}: expected HOST:PORT, e.g. 127.0.0.1:2087")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stdio and args.tcp:
        parser.error("--stdio and --tcp exclude each other")
    address = _address(args.tcp, parser) if args.tcp else None
    handler: logging.Handler = (logging.FileHandler(args.log_file, encoding="utf-8")
                                if args.log_file else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)  # torch / transformers warnings go to the log, not stdout
    # pygls logs whole messages at INFO, initializationOptions (a token) included; the
    # logLevel setting "debug" turns them back on
    logging.getLogger("pygls").setLevel(logging.WARNING)

    from .server import server  # after logging: importing it registers the features

    if address is not None:
        server.start_tcp(*address)
    else:
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
