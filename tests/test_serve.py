"""serve: the real server in a subprocess, on loopback, through a real HTTP client (requests)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from catdog_pl.cli import main
from catdog_pl.data.inputs import expand_inputs
from catdog_pl.inference.predictor import Predictor
from catdog_pl.serving.layout import serve_layout

from .helpers import png_bomb, write_image
from .serving import Server, tiny_model

pytest.importorskip("litserve", reason="the [serve] extra (litserve, python-multipart) is not installed")
requests = pytest.importorskip("requests", reason="the tests' HTTP client, requests, is not installed")

from catdog_pl.serving.server import CatDogAPI, build_server  # noqa: E402 (after the extra's check)
from catdog_pl.serving.uploads import DecodedUpload  # noqa: E402

MAX_UPLOAD_MB = 1
LAYOUT = ("--workers", "2", "--threads", "1", "--api_servers", "2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """The PyTorch server, as two HTTP processes and two inference workers whatever the machine's cores; its model
    loads 2 s late, so that the test sees /health answer 503 first."""
    checkpoint, _ = trained
    log = tmp_path_factory.mktemp("server") / "server.log"
    with Server("--ckpt_path", str(checkpoint), "--runtime", "pytorch", "--max_upload_mb", str(MAX_UPLOAD_MB),
                "--setup_delay", "2", *LAYOUT, log=log) as running:  # fmt: skip
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
        assert body["probabilities"]["dog"] == pytest.approx(p_dog, abs=1e-6)
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_raw_body_is_an_image_too(server, expected):
    path, (label, p_dog) = next(iter(expected.items()))
    answer = requests.post(
        f"{server.url}/predict", data=Path(path).read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["label"] == label and "file" not in answer.json()
    assert answer.json()["probabilities"]["dog"] == pytest.approx(p_dog, abs=1e-6)


def bad_requests(tmp: Path) -> dict[str, tuple[dict, int, str]]:
    """name -> (requests.post keyword arguments, status, a word of the error)."""
    good = write_image(tmp / "good.jpg", np.random.default_rng(0), bright=True, size=(64, 64)).read_bytes()
    bomb = png_bomb(tmp / "bomb.png").read_bytes()
    big = b"\xff" * (MAX_UPLOAD_MB * 1024 * 1024 + 1)
    return {
        "empty": ({"files": {"file": ("empty.jpg", b"")}}, 400, "empty"),
        "truncated": ({"files": {"file": ("cut.jpg", good[:300])}}, 400, "truncated"),
        "text": ({"files": {"file": ("notes.jpg", b"these are not pixels")}}, 400, "not an image"),
        "bomb": ({"files": {"file": ("bomb.png", bomb)}}, 400, "bomb"),
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
    assert info["image_size"] == 64 and info["backbone"] == "keras_cnn" and info["test_acc"] is None
    assert info["runtime"] == "pytorch" and info["resize"]["resample"] == "bilinear"
    assert (info["workers"], info["threads_per_worker"], info["api_servers"]) == (2, 1, 2)


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
