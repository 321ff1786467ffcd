"""The wire protocol between host and runner (sandbox_image/taco_runner/protocol.py): every message
and outcome survives the trip, frames torn anywhere are reassembled, and what is not a message is
refused (on the host, as a SandboxError: a broken runner is infrastructure, never a verdict).  Also
the runner's end of the channel, over a real pipe.  No Docker: milliseconds."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
import types

import pytest

from harness.errors import SandboxError
from harness.sandbox.docker.backend import DockerSandbox
from harness.sandbox.interface import RunnerStream
from sandbox_image.taco_runner import protocol
from sandbox_image.taco_runner.channel import BATCH_WINDOW_S, Garbled, HostChannel
from sandbox_image.taco_runner.protocol import (
    CaseFinished,
    CheckerDied,
    Compiled,
    CompileStatus,
    FrameDecoder,
    Hello,
    JobDone,
    NonZeroExit,
    NotUnderstood,
    Output,
    OutputOverflow,
    ProtocolError,
    Raised,
    Ready,
    ReturnValue,
    RunCallJob,
    RunStdinJob,
    RuntimeFailure,
    StopJob,
    TimedOut,
    Uncomparable,
    decode_host_message,
    decode_runner_message,
    encode_frame,
)
from sandbox_image.taco_runner.valuecodec import encode

OUTCOMES = [
    Output("3\n"),
    Output("7", from_output_file=True),
    NonZeroExit(1, "Traceback ...\nValueError\n"),
    NonZeroExit(-9, ""),
    RuntimeFailure("output is not valid UTF-8"),
    TimedOut(),
    OutputOverflow(),
    CheckerDied(),
    ReturnValue(encode({1: (2, 3.5), "x": [None, True]})),
    Raised("ValueError: x"),
    Uncomparable("value contains itself"),
]
HOST_MESSAGES = [
    Hello(),
    RunStdinJob(
        job_id=7, timeout_s=4.0, output_limit_bytes=64 << 20, compile_only=False, fresh_interpreter=True,
        compile_program="def code():\n\tpass\n", exec_program="print(1)\n", second_program="print(1)\ncode()\n",
        inputs=("1 2\n", "", "\ud800 lone surrogate\n"),
    ),
    RunCallJob(
        job_id=8, timeout_s=1.5, output_limit_bytes=1024, compile_only=True, program="def add(a, b):\n    return a + b",
        fn_name="add", args=('["L",1,2]',),
    ),
    StopJob(7),
]  # fmt: skip
RUNNER_MESSAGES = [
    Ready(protocol.PROTOCOL_VERSION, "3.11.2"),
    *(Compiled(7, status, "SyntaxError: x" if status is CompileStatus.ERROR else "") for status in CompileStatus),
    *(CaseFinished(7, 1 + i % 2, i, outcome, 12.5 + i) for i, outcome in enumerate(OUTCOMES)),
    JobDone(7, stopped=True, retire_reason=""),
    JobDone(8, stopped=False, retire_reason="sysv shm"),
    NotUnderstood("frame holds a list, not an object"),
]


def _frame(obj: object) -> bytes:
    payload = json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


def _decoded(data: bytes, decoder: FrameDecoder | None = None) -> list[dict]:
    decoder = decoder or FrameDecoder()
    decoder.feed(data)
    found = []
    while (wire := decoder.next_object()) is not None:
        found.append(wire)
    return found


def test_every_message_kind_is_covered_here():
    kinds = {m.KIND for m in HOST_MESSAGES}, {m.KIND for m in RUNNER_MESSAGES}, {o.KIND for o in OUTCOMES}
    assert kinds == (set(protocol._HOST_MESSAGES), set(protocol._RUNNER_MESSAGES), set(protocol._OUTCOMES))


@pytest.mark.parametrize("message", HOST_MESSAGES, ids=lambda m: m.KIND)
def test_host_messages_round_trip(message):
    (wire,) = _decoded(encode_frame(message))
    assert decode_host_message(wire) == message


@pytest.mark.parametrize("message", RUNNER_MESSAGES, ids=lambda m: f"{m.KIND}-{getattr(m, 'outcome', m).KIND}")
def test_runner_messages_round_trip(message):
    (wire,) = _decoded(encode_frame(message))
    back = decode_runner_message(wire)
    assert back == message and type(back) is type(message)


def test_the_wire_names_every_field_and_is_ascii():
    frame = encode_frame(CaseFinished(3, 2, 1, NonZeroExit(1, "é\ud800"), 1.0))
    assert frame[4:].isascii()
    assert json.loads(frame[4:]) == {
        "kind": "case_finished", "job_id": 3, "pass_number": 2, "case_index": 1, "program_ms": 1.0,
        "outcome": {"kind": "nonzero_exit", "returncode": 1, "stderr_tail": "é\ud800"},
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        CaseFinished(3, 1, 0, Output("4\n"), 0.512),
        CaseFinished(1 << 40, 2, 99, Output('é\ud800\x00"\\\t\r\n', from_output_file=True), 1e-05),
        CaseFinished(7, 1, 3, Output(""), 123456789.25),
        CaseFinished(7, 1, 3, Output("x"), 0.0),
        CaseFinished(7, 1, 3, Output("x"), float("nan")),  # not JSON's usual kind: the general way
        CaseFinished(7, True, 3, Output("x"), 1.5),  # a bool where an int goes: the general way
        CaseFinished(7, 1, 3, Output("x"), 2),  # an int where a float goes: the general way
        CaseFinished(7, 1, 3, Output("x"), 1.0, retry_timeout=TimedOut(wall_ms=3.0)),
    ],
)
def test_the_usual_test_message_is_written_as_the_general_way_writes_it(case):
    # A passing test's message is written without the general encoder (it goes out once per test);
    # the bytes must be the general encoder's.
    general = json.dumps(protocol.to_wire(case), separators=(",", ":")).encode("utf-8")
    assert protocol.encode_payload(case) == general


def test_a_spliced_return_value_is_the_return_value_message():
    encoded = b'["T",1,["L","x"]]'
    payload = protocol.return_value_payload(encoded)
    assert payload == protocol.encode_payload(ReturnValue(json.loads(encoded)))
    assert protocol.decode_outcome(json.loads(payload)) == ReturnValue(["T", 1, ["L", "x"]])


def test_frames_torn_anywhere_are_reassembled():
    messages = [*HOST_MESSAGES, *RUNNER_MESSAGES]
    stream = b"".join(encode_frame(m) for m in messages)
    for piece in (1, 3, 4, 5, 7, 64, len(stream)):
        decoder = FrameDecoder()
        found = []
        for start in range(0, len(stream), piece):
            found += _decoded(stream[start : start + piece], decoder)
        assert len(found) == len(messages), piece
    assert decoder.next_object() is None


def test_a_partial_frame_waits_for_the_rest():
    frame = encode_frame(StopJob(1))
    for cut in (0, 2, 4, len(frame) - 1):
        decoder = FrameDecoder()
        decoder.feed(frame[:cut])
        assert decoder.next_object() is None
        decoder.feed(frame[cut:])
        assert decoder.next_object() == {"kind": "stop", "job_id": 1}
        assert decoder.next_object() is None


@pytest.mark.parametrize(
    "data, complaint",
    [
        (struct.pack(">I", 3) + b"{x}", "not JSON"),
        (struct.pack(">I", 2) + b"\xff\xfe", "not JSON"),
        (_frame([1, 2]), "not an object"),
        (_frame({"kind": "no such kind"}), "not a runner message"),
        (_frame({"job_id": 1}), "not a runner message"),
        (_frame({"kind": "stop", "job_id": 1}), "not a runner message"),  # a host message
        (_frame({"kind": "job_done", "job_id": 1, "stopped": False}), "without 'retire_reason'"),
        (_frame({"kind": "job_done", "job_id": True, "stopped": False, "retire_reason": ""}), "'job_id' is not an integer"),
        (_frame({"kind": "compiled", "job_id": 1, "status": "fine", "error": ""}), "not a compile status"),
        (_frame({"kind": "case_finished", "job_id": 1, "pass_number": 1, "case_index": 0, "program_ms": 1,
                 "outcome": {"kind": "output", "text": 3, "from_output_file": False}}), "'text' is not a string"),
        (_frame({"kind": "case_finished", "job_id": 1, "pass_number": 1, "case_index": 0, "program_ms": 1,
                 "outcome": {"kind": "out", "text": "3"}}), "not a test outcome"),
        (struct.pack(">I", 10000) + b"{" * 5000 + b"}" * 5000, "not JSON"),
    ],
    ids=["bad json", "bad utf-8", "array", "unknown kind", "no kind", "host message", "missing field",
         "bool for int", "bad enum", "wrong type in outcome", "unknown outcome", "too deep"],
)  # fmt: skip
def test_what_is_not_a_runner_message_is_a_sandbox_error_on_the_host(data, complaint):
    with pytest.raises(ProtocolError, match=complaint):
        for wire in _decoded(data):
            decode_runner_message(wire)
    stream = RunnerStream("sbx-1")
    stream.feed(data)
    with pytest.raises(SandboxError, match=f"sbx-1: runner sent a malformed frame: .*{complaint}"):
        stream.next_message()


def test_a_malformed_frame_fails_the_docker_sandbox():
    """Through the real Docker sandbox code, on a socket standing in for the attached container."""
    host, runner = socket.socketpair()
    container = types.SimpleNamespace(name="sbx-2", remove=lambda force: None)
    sandbox = DockerSandbox(None, container, host)
    try:
        good = encode_frame(Ready(protocol.PROTOCOL_VERSION, "3.11"))
        bad = struct.pack(">I", 3) + b"[1]"
        for payload in (good, bad):  # Docker's stream header: stdout, 3 zero bytes, length
            runner.sendall(bytes([1, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload)
        assert sandbox.recv(5.0) == Ready(protocol.PROTOCOL_VERSION, "3.11")
        with pytest.raises(SandboxError, match="sbx-2: runner sent a malformed frame"):
            sandbox.recv(5.0)
    finally:
        sandbox.close()
        runner.close()


def test_an_oversized_frame_is_refused_before_it_arrives():
    decoder = FrameDecoder(max_payload=100)
    decoder.feed(struct.pack(">I", 101))
    with pytest.raises(ProtocolError, match="101 bytes"):
        decoder.next_object()


def test_the_runner_channel_over_a_pipe():
    to_runner_r, to_runner_w = os.pipe()
    from_runner_r, from_runner_w = os.pipe()
    channel = HostChannel(to_runner_r, from_runner_w)
    try:
        assert channel.poll() is None  # nothing yet, and no blocking
        frames = encode_frame(StopJob(1)) + _frame({"kind": "bogus"}) + encode_frame(HOST_MESSAGES[1])
        os.write(to_runner_w, frames[:3])
        assert channel.poll() is None  # a torn frame waits
        os.write(to_runner_w, frames[3:])
        assert channel.poll() == StopJob(1)
        channel.defer(channel.poll())  # the garbled one waits in the backlog
        assert channel.next_message() == Garbled("not a host message: kind 'bogus'")
        assert channel.next_message() == HOST_MESSAGES[1]
        channel.send(JobDone(7, False, ""))
        (wire,) = _decoded(os.read(from_runner_r, 1 << 16))
        assert decode_runner_message(wire) == JobDone(7, False, "")
        os.close(to_runner_w)
        to_runner_w = -1
        assert channel.next_message() is None  # the host went away
    finally:
        for fd in (to_runner_r, to_runner_w, from_runner_r, from_runner_w):
            if fd >= 0:
                os.close(fd)


def test_messages_sent_soon_travel_together_in_order_and_by_their_due_time():
    from_runner_r, from_runner_w = os.pipe()
    os.set_blocking(from_runner_r, False)
    channel = HostChannel(-1, from_runner_w)
    finished = [CaseFinished(3, 1, i, Output(f"{i}\n"), 0.5) for i in range(3)]
    try:
        assert channel.flush_due() is None
        before = time.monotonic()
        channel.send_soon(finished[0])
        channel.send_soon(finished[1])
        due = channel.flush_due()
        assert due is not None and before < due <= time.monotonic() + BATCH_WINDOW_S
        with pytest.raises(BlockingIOError):
            os.read(from_runner_r, 1 << 16)  # nothing written yet
        channel.send(finished[2])  # a message sent now takes the pending ones along, first
        wires = _decoded(os.read(from_runner_r, 1 << 16))
        assert [decode_runner_message(w) for w in wires] == finished
        assert channel.flush_due() is None
        channel.send_soon(finished[0])
        time.sleep(BATCH_WINDOW_S)
        channel.send_soon(finished[1])  # the first is overdue: both go
        assert [decode_runner_message(w) for w in _decoded(os.read(from_runner_r, 1 << 16))] == finished[:2]
        channel.send_soon(JobDone(3, False, ""))
        channel.flush()
        assert [decode_runner_message(w) for w in _decoded(os.read(from_runner_r, 1 << 16))] == [JobDone(3, False, "")]
    finally:
        os.close(from_runner_r)
        os.close(from_runner_w)
