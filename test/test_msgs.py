"""Our .msg files: found, parsed by rosbags, registered; ``new_message`` zero-fills."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import get_types_from_msg

from uwm_ros import msgs
from uwm_ros.msgs import ACTION_CHUNK, PREDICTED_FRAMES, MessageError, new_message, typestore

REPO_MSG = Path(__file__).resolve().parents[1] / "msg"


@pytest.mark.parametrize("msgtype", [ACTION_CHUNK, PREDICTED_FRAMES])
def test_msg_files_parse_and_register(msgtype: str) -> None:
    text = (REPO_MSG / (msgtype.rsplit("/", 1)[1] + ".msg")).read_text()
    assert msgtype in get_types_from_msg(text, msgtype)
    store = typestore()
    assert store is typestore()  # built once
    assert msgtype in store.types and "sensor_msgs/msg/Image" in store.types


def test_msg_dir_from_source_checkout_and_ament_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert msgs.find_msg_dir() == REPO_MSG
    share = tmp_path / "share"
    (share / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (share / "ament_index" / "resource_index" / "packages" / "uwm_ros").touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"/nonexistent:{tmp_path}")
    assert share / "uwm_ros" / "msg" in msgs._msg_dir_candidates()


def test_missing_msg_files_raise(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(msgs, "_msg_dir_candidates", lambda: [tmp_path])
    with pytest.raises(MessageError, match="ActionChunk.msg"):
        msgs.find_msg_dir()


def test_new_message_zero_fills_recursively() -> None:
    store = typestore()
    frames = new_message(store, PREDICTED_FRAMES, camera="front")
    assert frames.camera == "front" and frames.mode == "" and frames.sequence == 0
    assert frames.header.stamp.sec == 0 and frames.header.frame_id == ""
    assert frames.stamps == [] and frames.frames == []
    info = new_message(store, "sensor_msgs/msg/CameraInfo")
    assert info.k.dtype == np.float64 and info.k.shape == (9,) and not info.k.any()
    assert info.d.shape == (0,) and info.roi.do_rectify is False
    uuid = new_message(store, "unique_identifier_msgs/msg/UUID")
    assert uuid.uuid.dtype == np.uint8 and uuid.uuid.shape == (16,)
    image = new_message(store, "sensor_msgs/msg/Image")
    assert image.data.dtype == np.uint8 and image.data.size == 0 and image.encoding == ""
    # the result serialises with rosbags
    assert len(store.serialize_cdr(frames, PREDICTED_FRAMES)) > 0


def test_new_message_coerces_numeric_sequences() -> None:
    store = typestore()
    chunk = new_message(store, ACTION_CHUNK, data=[1, 2.5], names=["a"])
    assert chunk.data.dtype == np.float32 and chunk.data.tolist() == [1.0, 2.5]
    assert chunk.names == ["a"]
    image = new_message(store, "sensor_msgs/msg/Image", data=b"\x01\x02")
    assert image.data.dtype == np.uint8 and image.data.tolist() == [1, 2]


def test_new_message_rejects_unknown_fields_and_types() -> None:
    with pytest.raises(TypeError, match="horizn"):
        new_message(typestore(), ACTION_CHUNK, horizn=3)
    with pytest.raises(MessageError, match="nope"):
        new_message(typestore(), "nope/msg/Nope")
