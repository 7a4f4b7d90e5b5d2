"""A stand-in fgrm HTTP service (stdlib only) for testing trainer mechanics without models.

Toy rewards, same wire format: sentences ("." ends one) are "relevant" (+0.3) when they share
a word with the question, else -0.3; completeness is 0.3 * min(words, 20) / 20 at the end.
Tests of the real service live next to it and use the real `fgrm serve`.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _sentences(text):
    for m in re.finditer(r"[^.]+\.?", text):
        s, e = m.start(), m.end()
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            yield s, e


def _token_at(offsets, char):
    best = 0
    for i, (s, e) in enumerate(offsets):
        if s <= char and s < e:
            best = i
    return best


def score_item(item, weights):
    q = set(re.findall(r"\w+", item["question"].lower()))
    text = item["response"]
    rel = [{"start": s, "end": e, "text": text[s:e],
            "p_error": 0.0 if q & set(re.findall(r"\w+", text[s:e].lower())) else 1.0}
           for s, e in _sentences(text)]
    for seg in rel:
        seg["reward"] = 0.3 if seg["p_error"] < 0.5 else -0.3
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    comp = [{"start": lead, "end": lead + len(stripped), "text": stripped,
             "score": float(len(stripped.split())),
             "reward": 0.3 * min(len(stripped.split()), 20) / 20}] if stripped else []
    w = {"relevance": 1.0, "completeness": 1.0, **(weights or {})}
    types = {"relevance": {"granularity": "sub-sentence", "segments": rel},
             "completeness": {"granularity": "response", "segments": comp}}
    events = {}
    for name, t in types.items():
        t["total"] = sum(s["reward"] for s in t["segments"])
        for s in t["segments"]:
            events[s["end"]] = events.get(s["end"], 0.0) + w[name] * s["reward"]
    out = {"types": types, "mixed": {"weights": w, "total": sum(events.values()),
                                     "events": [{"end": k, "reward": v} for k, v in sorted(events.items())]}}
    offs = item.get("token_offsets")
    if offs is not None:
        tr = [0.0] * len(offs)
        if offs:
            for s in rel:
                tr[_token_at(offs, s["end"] - 1)] += w["relevance"] * s["reward"]
            for s in comp:
                tr[-1] += w["completeness"] * s["reward"]
        out["token_rewards"] = tr
    return out


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/readyz":
            return self._send(200, {})
        self._send(404, {"error": {"kind": "not_found", "message": self.path}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if self.path != "/v1/score":
            return self._send(404, {"error": {"kind": "not_found", "message": self.path}})
        self.server.calls += 1
        self.server.items += body["items"]
        self._send(200, {"results": [score_item(it, body.get("weights")) for it in body["items"]]})


def start() -> tuple[str, ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.calls = 0
    server.items = []  # every item scored, in order (what the client sent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server
