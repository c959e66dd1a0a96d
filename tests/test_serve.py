"""serve: the real server in a subprocess, on loopback, through a real HTTP client (requests)."""

from __future__ import annotations

import asyncio
import json
import select
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from catdog_pl.cli import main
from catdog_pl.data.inputs import expand_inputs
from catdog_pl.inference.predictor import Predictor
from catdog_pl.serving.layout import serve_layout

from . import abuse
from .helpers import CONFIG, PROBABILITY_ATOL, QUIET, png_bomb, write_image
from .serving import Server, tiny_model

pytest.importorskip("litserve", reason="the [serve] extra (litserve, python-multipart) is not installed")
requests = pytest.importorskip("requests", reason="the tests' HTTP client, requests, is not installed")

from catdog_pl.inference.card import read_test_record  # noqa: E402
from catdog_pl.serving.server import CatDogAPI, build_server  # noqa: E402 (after the extra's check)
from catdog_pl.serving.uploads import DecodedUpload, RequestLimit  # noqa: E402

MAX_UPLOAD_MB = 1
MAX_PIXELS = 2_000_000
LAYOUT = ("--workers", "2", "--threads", "1", "--api_servers", "2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def tested(trained, tmp_path_factory) -> tuple[Path, float]:
    """(a copy of the tiny checkpoint, its accuracy) after ``python -m catdog_pl test`` on it."""
    checkpoint, data = trained
    copy = tmp_path_factory.mktemp("tested") / "model.ckpt"
    copy.write_bytes(checkpoint.read_bytes())
    cli = main(["test", "--config", str(CONFIG), "--data.data_dir", str(data), "--ckpt_path", str(copy),
                "--trainer.logger", "false", *QUIET])  # fmt: skip
    return copy, float(cli.trainer.callback_metrics["test/acc"])


@pytest.fixture(scope="module")
def server(tested, tmp_path_factory):
    """The PyTorch server, as two HTTP processes and two inference workers whatever the machine's cores; its model
    loads only once the test has seen /health answer 503. It serves a tested checkpoint."""
    checkpoint, _ = tested
    log = tmp_path_factory.mktemp("server") / "server.log"
    with Server("--ckpt_path", str(checkpoint), "--runtime", "pytorch", "--max_upload_mb", str(MAX_UPLOAD_MB),
                "--max_pixels", str(MAX_PIXELS), *LAYOUT, log=log, gate=True) as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
def expected(trained) -> dict[str, tuple[str, float]]:
    """file path -> (label, p_dog) from the Python API, for the tiny test set."""
    checkpoint, data = trained
    rows = Predictor.from_checkpoint(checkpoint).predict_many(expand_inputs(data / "test_set"))
    return {row.path: (row.label, row.probabilities["dog"]) for row in rows}


def post_file(url: str, path: Path | str, data: bytes | None = None) -> requests.Response:
    name = Path(path).name
    content = Path(path).read_bytes() if data is None else data
    return requests.post(f"{url}/predict", files={"file": (name, content, "image/jpeg")}, timeout=30)


def test_health_is_503_until_the_model_is_loaded_then_200(server):
    assert 503 in server.health_seen and server.health_seen[-1] == 200
    assert server.health_seen.index(503) < server.health_seen.index(200)


def test_labels_equal_predicts(server, expected):
    for path, (label, p_dog) in expected.items():
        answer = post_file(server.url, path)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["label"] == label and body["file"] == Path(path).name and body["threshold"] == 0.5
        assert body["probabilities"]["dog"] == pytest.approx(p_dog, abs=PROBABILITY_ATOL)
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_raw_body_is_an_image_too(server, expected):
    path, (label, p_dog) = next(iter(expected.items()))
    answer = requests.post(
        f"{server.url}/predict", data=Path(path).read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["label"] == label and "file" not in answer.json()
    assert answer.json()["probabilities"]["dog"] == pytest.approx(p_dog, abs=PROBABILITY_ATOL)


def bad_requests(tmp: Path) -> dict[str, tuple[dict, int, str]]:
    """name -> (requests.post keyword arguments, status, a word of the error)."""
    good = write_image(tmp / "good.jpg", np.random.default_rng(0), bright=True, size=(64, 64)).read_bytes()
    bomb = png_bomb(tmp / "bomb.png").read_bytes()
    big = b"\xff" * (MAX_UPLOAD_MB * 1024 * 1024 + 1)
    return {
        "empty": ({"files": {"file": ("empty.jpg", b"")}}, 400, "empty"),
        "truncated": ({"files": {"file": ("cut.jpg", good[:300])}}, 400, "truncated"),
        "text": ({"files": {"file": ("notes.jpg", b"these are not pixels")}}, 400, "not an image"),
        "bomb": ({"files": {"file": ("bomb.png", bomb)}}, 413, "bomb"),
        "over the pixel limit": (
            {"files": {"file": ("wide.png", png_bomb(tmp / "w.png", 2000, 1001).read_bytes())}},
            413,
            "--max_pixels",
        ),
        "eps": ({"files": {"file": ("a.eps", abuse.eps())}}, 415, "EPS images are not accepted"),
        "psd": ({"data": abuse.psd(), "headers": {"Content-Type": "image/octet-stream"}}, 415, "PSD"),
        "raw empty": ({"data": b"", "headers": {"Content-Type": "image/jpeg"}}, 400, "empty"),
        "over the limit": ({"files": {"file": ("big.jpg", big)}}, 413, "limit"),
        "raw over the limit": ({"data": big, "headers": {"Content-Type": "image/jpeg"}}, 413, "limit"),
        "json": ({"json": {"file": "photo.jpg"}}, 415, "content type"),
        "form": ({"data": {"file": "photo.jpg"}}, 415, "content type"),
        "no content type": ({"data": good, "headers": {"Content-Type": ""}}, 415, "content type"),
        "missing field": ({"files": {"photo": ("good.jpg", good)}}, 422, "missing field 'file'"),
        "text field": ({"files": {"file": (None, "photo.jpg")}}, 422, "file"),
        "broken multipart": ({"data": good, "headers": {"Content-Type": "multipart/form-data"}}, 400, "boundary"),
    }


def test_error_contract(server, tmp_path):
    for name, (kwargs, status, word) in bad_requests(tmp_path).items():
        answer = requests.post(f"{server.url}/predict", timeout=30, **kwargs)
        assert answer.status_code == status, (name, answer.status_code, answer.text)
        assert word in answer.json()["error"], (name, answer.text)
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200, name


def test_bad_requests_in_a_busy_batch_fail_alone(server, expected, tmp_path):
    """Good and bad uploads at once, through both HTTP processes and both workers: every good one gets its own
    answer (its file's name and label), every bad one its 400."""
    good = list(expected.items()) * 2
    bad = [b"", b"not an image", write_image(tmp_path / "g.jpg", np.random.default_rng(1), True).read_bytes()[:200]]
    jobs = [(path, None, label) for path, (label, _) in good] + [("bad.jpg", data, None) for data in bad * 4]
    order = np.random.default_rng(0).permutation(len(jobs))
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda job: post_file(server.url, job[0], job[1]), [jobs[i] for i in order]))
    for index, answer in zip(order, answers, strict=True):
        _, data, label = jobs[index]
        if label is None:
            assert answer.status_code == 400 and "error" in answer.json()
        else:
            assert answer.status_code == 200 and answer.json()["label"] == label
            assert answer.json()["file"] == Path(jobs[index][0]).name


def test_info_describes_the_model(server):
    info = requests.get(f"{server.url}/info", timeout=5).json()
    assert info["classes"] == ["cats", "dogs"] and info["labels"] == ["cat", "dog"]
    assert info["image_size"] == 64 and info["backbone"] == "keras_cnn"
    assert info["runtime"] == "pytorch" and info["resize"]["resample"] == "nearest"  # cnn.yaml loads as Keras does
    assert (info["workers"], info["threads_per_worker"], info["api_servers"]) == (2, 1, 2)
    assert (info["max_upload_bytes"], info["max_pixels"]) == (MAX_UPLOAD_MB * 1024 * 1024, MAX_PIXELS)
    assert (info["max_concurrent"], info["max_decodes"]) == (64, 2)
    assert info["formats"] == ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]


def test_info_and_page_show_the_accuracy_test_recorded(server, tested, expected):
    """``test`` wrote its accuracy beside the checkpoint; /info carries it with its interval and data set, and it is
    the share of the test photos that predict labels right."""
    _, accuracy = tested
    info = requests.get(f"{server.url}/info", timeout=5).json()
    right = sum(label == Path(path).parent.name[:-1] for path, (label, _) in expected.items())
    assert info["test_acc"] == pytest.approx(accuracy) == pytest.approx(right / len(expected))
    assert info["test"]["n"] == len(expected) == 16 and info["test"]["data"] == "data (test_set)"
    assert info["test"]["low95"] <= accuracy <= info["test"]["high95"]
    assert "info.test" in requests.get(f"{server.url}/", timeout=5).text  # the page draws it (test_browser sees it)


def test_export_carries_the_accuracy_test_recorded(tested, tmp_path):
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    import onnxruntime

    checkpoint, accuracy = tested
    main(["export", "--ckpt_path", str(checkpoint), "--output", str(tmp_path / "model.onnx")])
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert float(meta["test_acc"]) == pytest.approx(accuracy)
    assert json.loads(meta["test"])["n"] == 16 and json.loads(meta["test"])["data"] == "data (test_set)"


def test_a_changed_checkpoint_loses_its_recorded_accuracy(tested, tmp_path):
    """The record names the checkpoint's SHA-256: a checkpoint written over since (a new fit) has no accuracy."""
    checkpoint, accuracy = tested
    assert read_test_record(checkpoint)["acc"] == pytest.approx(accuracy)
    copy = tmp_path / "model.ckpt"
    copy.write_bytes(checkpoint.read_bytes() + b"\0")
    (tmp_path / "model.ckpt.test.json").write_bytes(Path(f"{checkpoint}.test.json").read_bytes())
    assert read_test_record(copy) is None


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    """413 from the declared length with none of the body sent, and from a chunked body as soon as it passes the
    limit: the client sends no more than that."""
    limit = MAX_UPLOAD_MB * 1024 * 1024
    declared = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {100 * limit}\r\n\r\n").encode()  # fmt: skip
    chunked = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = 64 * 1024
    over = b"".join(f"{chunk:x}\r\n".encode() + b"\xff" * chunk + b"\r\n" for _ in range(limit // chunk + 1))
    for request in (declared, chunked + over):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(request)  # and nothing more
            answer = b""  # the head and the JSON body may come in two packets: read until the server closes
            while part := connection.recv(4096):
                answer += part
            answer = answer.decode(errors="replace")
        assert answer.startswith("HTTP/1.1 413") and "over the limit" in answer, answer[:300]


def test_a_full_process_answers_503_with_retry_after_then_recovers(server, expected):
    """More stalled uploads than the two HTTP processes take (64 each): the extra ones are answered 503 with
    Retry-After at once, the others wait for their bodies; once they close, every slot is free again."""
    stalled = []
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\nabc"
    try:
        for _ in range(160):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            connection.sendall(head)
            stalled.append(connection)
        answers = {}
        while ready := select.select([c for c in stalled if c not in answers], [], [], 1.0)[0]:
            for connection in ready:  # until none has answered for 1 s: the others wait for their bodies
                answers[connection] = connection.recv(4096).decode(errors="replace")
        assert 160 - 2 * 64 <= len(answers) < 160
        for answer in answers.values():
            assert answer.startswith("HTTP/1.1 503") and "retry-after: 1" in answer.lower(), answer[:300]
    finally:
        for connection in stalled:
            connection.close()
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    with ThreadPoolExecutor(max_workers=16) as pool:  # 16 at once: refused if a stalled upload kept its slot
        answers = list(pool.map(lambda path: post_file(server.url, path), list(expected) * 4))
    assert [answer.status_code for answer in answers] == [200] * len(answers)


def test_the_http_processes_hold_no_torch(server):
    """The main process and the HTTP processes it forks map no PyTorch library; only the inference workers do."""
    kinds = {"http": [], "worker": []}
    for pid in server.pids():
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "catdog_pl serve" in command:
            kinds["http"].append(pid)
        elif "spawn_main" in command:
            kinds["worker"].append(pid)
    maps = {pid: Path(f"/proc/{pid}/maps").read_text() for pid in kinds["http"] + kinds["worker"]}
    # main, its Manager (forked) and 2 HTTP processes; 2 workers
    assert len(kinds["http"]) >= 3 and len(kinds["worker"]) == 2
    assert not any("libtorch" in maps[pid] for pid in kinds["http"])
    assert all("libtorch" in maps[pid] for pid in kinds["worker"])


def test_hostile_uploads_beside_good_clients(server, expected, tmp_path):
    """The abuse benchmark in small: 16 clients post the test photos while 4 send every hostile kind (an RGBA PNG
    over the pixel limit, a 100-megapixel JPEG header, EPS, PSD, a body over the limit, truncated JPEG and PNG):
    every bad request its 4xx, every good one its label, and the server's memory stays put."""
    good = [(Path(path).name, Path(path).read_bytes(), label) for path, (label, _) in expected.items()]
    bad = abuse.bad_uploads(MAX_UPLOAD_MB * 1024 * 1024, big_side=1500)
    rest = sum(server.rss_bytes().values())
    result = abuse.attack(server.url, good, bad, good_clients=16, bad_clients=4, rounds=4, bad_rounds=2,
                          rss=lambda: sum(server.rss_bytes().values()))  # fmt: skip
    assert result.good_wrong == [] and result.bad_wrong == []
    assert len(result.good_latencies) == 4 * len(good) and sum(result.bad_counts.values()) == 4 * 2 * len(bad)
    assert result.peak_rss - rest < 512 * 1024**2
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_request_limit_answers_503_past_its_limit():
    """The middleware alone: two requests held inside, the third answered 503 at once; other paths pass."""

    async def scenario() -> list:
        release = asyncio.Event()
        sent = []

        async def app(scope, receive, send):
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})

        async def send(message):
            sent.append((message.get("status"), dict(message.get("headers", []))))

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        limit = RequestLimit(app, limit=2)
        scope = {"type": "http", "path": "/predict", "method": "POST", "headers": []}
        held = [asyncio.create_task(limit(scope, receive, send)) for _ in range(2)]
        await asyncio.sleep(0)
        await limit(scope, receive, send)  # returns at once: 503
        other = asyncio.create_task(limit({**scope, "path": "/health"}, receive, send))
        await asyncio.sleep(0)
        assert limit.active == 2 and not other.done()
        release.set()
        await asyncio.gather(*held, other)
        assert limit.active == 0
        return sent

    sent = asyncio.run(scenario())
    assert sent[0][0] == 503 and sent[0][1][b"retry-after"] == b"1"
    assert [status for status, _ in sent if status is not None] == [503, 200, 200, 200]


def test_queues_between_the_processes_are_pipes(trained):
    """The request and answer queues are multiprocessing pipes, not LitServe's manager proxies, each of whose calls
    is a round trip to one more process."""
    from multiprocessing.queues import Queue

    server = build_server(str(trained[0]))
    manager = server._init_manager(num_api_servers=2)
    try:
        assert isinstance(server.litapi_request_queues["/predict"], Queue)
        assert [type(queue) for queue in server._transport._queues] == [Queue, Queue]
    finally:
        manager.shutdown()


def test_a_decoded_upload_formats_without_its_pixels():
    """LitServe formats every request for a debug line on the HTTP process's event loop, logged or not: the decoded
    upload's repr is one short line, not numpy's printing of the pixels."""
    assert repr(DecodedUpload(np.zeros((256, 256, 3), np.uint8), "cat.jpg")) == (
        "DecodedUpload(file='cat.jpg', image=(256, 256, 3))"
    )


def test_page_is_served_at_the_root(server):
    page = requests.get(f"{server.url}/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'type="file"' in page.text and "predict" in page.text
    assert requests.get(f"{server.url}/nothing", timeout=5).json() == {"error": "Not Found"}


def test_onnx_server_gives_the_same_labels_without_torch(trained, tmp_path):
    """Against the fp32 predictor: the ONNX graph is fp32, where predict may run bf16 autocast. Every process of
    the server (main, HTTP, worker) runs with torch and Lightning made unimportable: the ONNX path needs neither."""
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    checkpoint, data = trained
    rows = Predictor.from_checkpoint(checkpoint, bf16=False).predict_many(expand_inputs(data / "test_set"))
    expected = {row.path: (row.label, row.probabilities["dog"]) for row in rows}
    main(["export", "--ckpt_path", str(checkpoint), "--output", str(tmp_path / "model.onnx")])
    forbid = ("torch", "lightning", "torchvision", "timm", "torchmetrics")
    onnx_file = str(tmp_path / "model.onnx")
    with Server("--onnx", onnx_file, "--workers", "1", log=tmp_path / "server.log", forbid=forbid) as onnx_server:
        info = requests.get(f"{onnx_server.url}/info", timeout=5).json()
        assert info["runtime"] == "onnxruntime" and (info["workers"], info["api_servers"]) == (1, 1)
        for path, (label, p_dog) in expected.items():
            body = post_file(onnx_server.url, path).json()
            assert body["label"] == label and body["probabilities"]["dog"] == pytest.approx(p_dog, abs=1e-5)
    assert onnx_server.exited_on_sigterm, "the server needed SIGKILL to stop"


def test_a_worker_takes_its_thread_count(trained):
    """The worker's setup (run here in-process) sets PyTorch's threads to its own count, then answers a batch."""
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    api = CatDogAPI(str(trained[0]), None, threads=wanted)
    try:
        api.setup("cpu")
        assert torch.get_num_threads() == wanted
        image = np.zeros((64, 64, 3), np.uint8)
        answers = [api.encode_response(out) for out in api.predict([DecodedUpload(image, "a.jpg")] * 3)]
        assert [answer["file"] for answer in answers] == ["a.jpg"] * 3 and answers[0]["label"] in ("cat", "dog")
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cores", "given", "layout"),
    [(1, (None, None), (1, 1)), (2, (None, None), (2, 1)), (8, (None, None), (4, 2)), (64, (None, None), (4, 16)),
     (2, (1, None), (1, 2)), (8, (3, 1), (3, 1))],
)  # fmt: skip
def test_serve_layout_shares_the_cores(cores, given, layout):
    assert serve_layout(*given, cores=cores) == layout


def test_serve_refuses_a_missing_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--onnx", str(tmp_path / "nothing.onnx")])
    assert exit_info.value.code == 2 and "no such ONNX file" in capsys.readouterr().err
