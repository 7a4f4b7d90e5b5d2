"""service.preflight: `fgrm serve` refuses, in one line naming the file and key, a configuration
that would kill every worker at start-up (bentoml would restart them every 10 s for ever), and a
port it cannot bind."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.config import DEFAULT_TYPES_FILE, REPO_ROOT
from service.config import Settings
from benchmarks.launch import free_port
from service.preflight import problem, taken_port

SHIPPED = REPO_ROOT / "artifacts" / "fgrm-qa-signals"


def _types(tmp_path: Path, checkpoint: Path) -> Path:
    """The shipped feedback-types file with every checkpoint replaced by `checkpoint`."""
    f = tmp_path / "types.toml"
    f.write_text(DEFAULT_TYPES_FILE.read_text().replace('"artifacts/fgrm-qa-signals"', json.dumps(str(checkpoint))))
    return f


def _moved(tmp_path: Path, encoder: str) -> Path:
    """A copy of the shipped checkpoint whose fgrm.json names `encoder` as its encoder."""
    out = tmp_path / "ckpt"
    shutil.copytree(SHIPPED, out)
    meta = json.loads((out / "fgrm.json").read_text())
    (out / "fgrm.json").write_text(json.dumps({**meta, "encoder": encoder}))
    return out


def test_the_shipped_configuration_has_no_problem():
    assert problem(Settings()) is None


def test_a_missing_checkpoint_is_named_with_its_feedback_type(tmp_path):
    found = problem(Settings(feedback_types=_types(tmp_path, tmp_path / "nowhere")))
    assert found == f"feedback type 'relevance': {tmp_path / 'nowhere'} is not an fgrm checkpoint (no fgrm.json)"


def test_a_moved_encoder_says_where_it_was_looked_for_and_how_to_point_at_it(tmp_path):
    ckpt = _moved(tmp_path, "/nonexistent/encoder")
    found = problem(Settings(feedback_types=_types(tmp_path, ckpt)))
    assert found == (f"feedback type 'relevance': {ckpt}: its encoder (fgrm.json 'encoder': /nonexistent/encoder) "
                     "has no model.safetensors at /nonexistent/encoder; put the encoder there, or set 'encoder' to "
                     "its directory (absolute, or relative to the checkpoint directory; 'encoder_sha256' still "
                     "checks the weights)")


def test_an_encoder_named_relative_to_the_checkpoint_is_found_and_still_checked(tmp_path):
    from models import checkpoint
    from models.embedding import default_backbone

    encoder = tmp_path / "encoder"
    shutil.copytree(default_backbone(), encoder)
    ckpt = _moved(tmp_path, "../encoder")
    assert problem(Settings(feedback_types=_types(tmp_path, ckpt))) is None
    (encoder / "model.safetensors").write_bytes(b"not the weights")
    checkpoint._verified.clear()  # what this process already hashed is not hashed again
    found = problem(Settings(feedback_types=_types(tmp_path, ckpt)))
    assert found is not None and found.startswith("feedback type 'relevance': encoder ../encoder at ")
    assert "model.safetensors has sha256" in found and "the checkpoint was trained on" in found


def test_bad_metadata_and_bad_files_are_named(tmp_path):
    ckpt = _moved(tmp_path, "")
    (ckpt / "fgrm.json").write_text("{not json")
    assert problem(Settings(feedback_types=_types(tmp_path, ckpt))).startswith(
        f"feedback type 'relevance': {ckpt / 'fgrm.json'}: not valid JSON (")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[feedback_type]]\nname = "relevance"\nkind = "segment_classifier"\n')
    assert problem(Settings(feedback_types=bad)) == (
        f"feedback types ({bad}): feedback type 'relevance': 'checkpoint' (a directory path) is required")


def test_a_prefix_delta_type_needs_a_hugging_face_directory(tmp_path):
    f = tmp_path / "types.toml"
    f.write_text(f'[[feedback_type]]\nname = "toxicity"\nkind = "prefix_delta"\ngranularity = "sentence"\n'
                 f'checkpoint = "{tmp_path}"\n')
    assert problem(Settings(feedback_types=f)) == (
        f"feedback type 'toxicity': {tmp_path} has no config.json (a Hugging Face sequence-classification directory)")


def test_a_bad_profile_weight_names_the_key_and_the_files(tmp_path):
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[profiles.mine]\nrelevance = "a"\n')
    assert problem(Settings(profiles=profiles)) == (
        f"profiles ({DEFAULT_TYPES_FILE}, {profiles}): profiles.mine.relevance: weight must be a number, got str")


def test_a_taken_port_is_named_and_a_free_one_is_not():
    http, grpc_ = free_port(), free_port()
    assert taken_port(Settings(http_port=http, grpc_port=grpc_)) is None
    assert taken_port(Settings(http_port=http, grpc_port=0)) is None
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", grpc_))
        holder.listen()
        assert taken_port(Settings(http_port=http, grpc_port=grpc_)) == (
            f"gRPC port 127.0.0.1:{grpc_} is in use (another server on it?); choose another with --grpc-port")
        assert taken_port(Settings(http_port=grpc_, grpc_port=http)) == (
            f"HTTP port 127.0.0.1:{grpc_} is in use (another server on it?); choose another with --http-port")
    # an address this machine does not have
    assert taken_port(Settings(http_port=http, grpc_host="192.0.2.1", grpc_port=grpc_)) == (
        f"gRPC address 192.0.2.1:{grpc_} cannot be bound (Cannot assign requested address); "
        "check --grpc-host and --grpc-port")


@pytest.mark.parametrize("flags, message", [
    (["--feedback-types", "{types}"], "fgrm serve: feedback type 'relevance': {nowhere} is not an fgrm checkpoint "
                                      "(no fgrm.json)\n"),
    (["--profiles", "{profiles}"], "fgrm serve: profiles ({shipped}, {profiles}): profiles.mine.relevance: weight must "
                                   "be a number, got str\n"),
    (["--api-key-file", "{nowhere}"], "fgrm serve: FGRM_API_KEY_FILE={nowhere}: cannot read it (No such file or "
                                      "directory)\n"),
    (["--grpc-port", "{held}"], "fgrm serve: gRPC port 127.0.0.1:{held} is in use (another server on it?); choose "
                                "another with --grpc-port\n"),
])
def test_fgrm_serve_exits_at_once_with_one_line(tmp_path, flags, message):
    """The real command, as a process: exit 2, one line on stderr, no traceback, no server."""
    holder = socket.socket()  # a port another server holds
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    names = {"types": _types(tmp_path, tmp_path / "nowhere"), "profiles": tmp_path / "profiles.toml",
             "nowhere": tmp_path / "nowhere", "shipped": DEFAULT_TYPES_FILE, "held": holder.getsockname()[1]}
    names["profiles"].write_text('[profiles.mine]\nrelevance = "a"\n')
    started = time.monotonic()
    with holder:
        run = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--http-port", str(free_port()),
                              "--grpc-port", "0", *(f.format(**names) for f in flags)],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr, run.stdout) == (2, message.format(**names), "")
    assert time.monotonic() - started < 60  # it did not wait for a worker to fail
