"""The `fgrm` command: `serve` here; `train`, `eval`, `export` dispatch to models/ (imported
only when asked for, so `fgrm serve` never imports training code)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from service.config import REPO_ROOT, Settings

COMMANDS = {"train": "models.train", "eval": "models.evaluate", "export": "models.export"}
SERVICE = "service.bento_service:RewardService"


def serve_parser() -> argparse.ArgumentParser:
    d = Settings()
    ap = argparse.ArgumentParser(prog="fgrm serve", description="Serve fine-grained rewards over HTTP (BentoML) "
                                 "and gRPC. Flags override the FGRM_* environment (see service/config.py).")
    ap.add_argument("--http-host", default=None, help=f"HTTP bind address (default {d.http_host})")
    ap.add_argument("--http-port", type=int, default=None, help=f"HTTP port (default {d.http_port})")
    ap.add_argument("--grpc-host", default=None, help=f"gRPC bind address (default {d.grpc_host})")
    ap.add_argument("--grpc-port", type=int, default=None, help=f"gRPC port, 0 = no gRPC (default {d.grpc_port})")
    ap.add_argument("--workers", type=int, default=None, help=f"worker processes (default {d.workers})")
    ap.add_argument("--runtime", default=None, help=f"auto | torch | onnx | onnx-int8 (default {d.runtime})")
    ap.add_argument("--feedback-types", default=None, help="feedback types TOML (default: the shipped one)")
    ap.add_argument("--profiles", default=None, help="weight profiles TOML")
    ap.add_argument("--admin-token-file", default=None,
                    help="file holding the admin token that PUT /v1/profiles needs (without one, profile writes "
                         "are refused)")
    ap.add_argument("--state-dir", default=None,
                    help="directory of the profile store that every worker and server on this host share "
                         "(default $XDG_DATA_HOME/fgrm, else ~/.local/share/fgrm)")
    ap.add_argument("--read-only", action="store_const", const=True, default=None,
                    help="profiles only from the configuration files; PUT /v1/profiles refused (clusters)")
    ap.add_argument("--api-key-file", default=None,
                    help="file holding an API key that scoring needs (HTTP Bearer, gRPC metadata); default: open")
    return ap


def serve_command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The `bentoml serve` command line and environment for `fgrm serve argv`."""
    args = serve_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    for key in ("feedback_types", "profiles", "admin_token_file", "api_key_file", "state_dir"):
        if key in overrides:
            overrides[key] = Path(overrides[key]).resolve()
    settings = Settings.from_env(os.environ, **overrides)
    env = {**os.environ, **settings.to_env()}
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # BentoML keeps its Prometheus multiprocess files in $BENTOML_HOME/prometheus_multiproc_dir and
    # empties it at start-up: a second server sharing that home wiped the first one's fgrm_*
    # metrics. One home per HTTP port (two servers cannot share a port) keeps them apart.
    home = Path(env.get("BENTOML_HOME") or Path.home() / "bentoml")
    env["BENTOML_HOME"] = str(home / f"fgrm-{settings.http_port}")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--working-dir", str(REPO_ROOT),
           "--host", settings.http_host, "--port", str(settings.http_port)]
    return cmd, env


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: fgrm {serve,train,eval,export} [options]\n\n"
              "  serve   serve rewards over HTTP and gRPC (fgrm serve --help)\n"
              "  train   train the reward models (models.train)\n"
              "  eval    evaluate a checkpoint on QA-Feedback-format data (models.evaluate)\n"
              "  export  export a checkpoint to ONNX (models.export)")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        try:
            cmd, env = serve_command(rest)
        except ValueError as exc:  # a setting that cannot be used (Settings.from_env names it)
            print(f"fgrm serve: {exc}", file=sys.stderr)
            return 2
        from service.preflight import problem, taken_port

        settings = Settings.from_env(env)
        found = problem(settings) or taken_port(settings)
        if found:  # every worker would die of it at start-up, and bentoml restarts them for ever
            print(f"fgrm serve: {found}", file=sys.stderr)
            return 2
        from service.proto import generate

        generate()  # once, before the workers start
        os.execve(cmd[0], cmd, env)  # bentoml handles signals itself; nothing of ours stays in between
    if command in COMMANDS:
        from models.runtime.options import set_defaults

        # the model commands take their runtime options (caches, threads, dtype) from the same
        # FGRM_* variables as the service, read here, not inside models/
        set_defaults(Settings.from_env(os.environ).runtime_options())
        return int(importlib.import_module(COMMANDS[command]).main(rest) or 0)
    print(f"fgrm: unknown command {command!r}; expected serve, {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
