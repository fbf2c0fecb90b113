"""The generic safetensors checkpoint: round trip, refusals, and errors that name the file."""

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from mbo.atomic import atomic_write_bytes
from mbo.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    load_state_strict,
    read_kind,
    save_checkpoint,
)


class Tiny(nn.Module):
    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, 2)
        self.register_buffer("scale", torch.arange(2.0))

    @property
    def config(self) -> dict:
        return {"dim": self.lin.in_features}


def tiny(dim: int = 3, seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny(dim)


def test_round_trip_module_and_dict(tmp_path):
    m = tiny()
    path = save_checkpoint(tmp_path / "m.safetensors", m)
    assert read_kind(path) == "Tiny"
    state, config = load_checkpoint(path, kind="Tiny")
    assert config == {"dim": 3} and set(state) == set(m.state_dict())
    other = tiny(seed=1)
    load_state_strict(other, state, path)
    for k, v in m.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)

    tensors = {"a": torch.arange(4.0), "b": torch.ones(2, 2, dtype=torch.long)}
    p2 = save_checkpoint(tmp_path / "d.safetensors", tensors, {"x": [1, 2]}, kind="Thing")
    got, config = load_checkpoint(p2)
    assert config == {"x": [1, 2]} and all(torch.equal(got[k], tensors[k]) for k in tensors)


def test_tied_weights_are_saved(tmp_path):
    m = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    m[1].weight = m[0].weight
    state, _ = load_checkpoint(save_checkpoint(tmp_path / "t.safetensors", m, {}))
    assert torch.equal(state["0.weight"], state["1.weight"])


def test_refuses_to_overwrite(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny())
    with pytest.raises(FileExistsError, match=r"m\.safetensors"):
        save_checkpoint(path, tiny(dim=5))
    assert load_checkpoint(path)[1] == {"dim": 3}
    save_checkpoint(path, tiny(dim=5), overwrite=True)
    assert load_checkpoint(path)[1] == {"dim": 5}


def test_missing_file(tmp_path):
    missing = tmp_path / "none.safetensors"
    for load in (read_kind, load_checkpoint):
        with pytest.raises(CheckpointError, match=r"none\.safetensors does not exist"):
            load(missing)
        # A run's folder given for its checkpoint exists: "does not exist" would send the user looking.
        with pytest.raises(CheckpointError, match=r"is a folder, not a \.safetensors file"):
            load(tmp_path)


def test_corrupt_and_truncated(tmp_path):
    garbage = atomic_write_bytes(tmp_path / "garbage.safetensors", b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=r"garbage\.safetensors is corrupt"):
        load_checkpoint(garbage)
    data = save_checkpoint(tmp_path / "good.safetensors", tiny(dim=64)).read_bytes()
    cut = atomic_write_bytes(tmp_path / "cut.safetensors", data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors (is corrupt|has corrupt)"):
        load_checkpoint(cut)


def test_not_a_project_checkpoint(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match=r"plain\.safetensors is not an mbo-checkpoint.*no format"):
        load_checkpoint(plain)
    old = tmp_path / "old.safetensors"
    save_file({"w": torch.zeros(2)}, str(old), metadata={"format": "mbo-checkpoint/1", "config": "{}"})
    with pytest.raises(CheckpointError, match=r"old\.safetensors .*older version"):
        read_kind(old)
    nokind = tmp_path / "nokind.safetensors"
    save_file({"w": torch.zeros(2)}, str(nokind), metadata={"format": FORMAT, "config": "{}"})
    with pytest.raises(CheckpointError, match=r"nokind\.safetensors has no 'kind'"):
        load_checkpoint(nokind)


def test_wrong_kind(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny())
    with pytest.raises(CheckpointError, match=r"m\.safetensors holds a Tiny, not a MaskedDiffusion"):
        load_checkpoint(path, kind="MaskedDiffusion")


def test_weight_mismatch_lists_the_weights(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny(dim=3))
    state, _ = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"m\.safetensors does not fit the Tiny.*shape mismatch "
                       r"lin\.weight: stored \(2, 3\), model \(2, 5\)"):
        load_state_strict(tiny(dim=5), state, path)
    extra = {**state, "extra": torch.zeros(1)}
    del extra["scale"]
    with pytest.raises(CheckpointError, match=r"m\.safetensors .*missing weights \['scale'\], "
                       r"unexpected weights \['extra'\]"):
        load_state_strict(tiny(), extra, path)


def test_non_json_config(tmp_path):
    with pytest.raises(ValueError, match=r"x\.safetensors: config for Tiny is not JSON-serializable"):
        save_checkpoint(tmp_path / "x.safetensors", tiny(), {"a": object()})
    with pytest.raises(ValueError, match=r"y\.safetensors: kind is required"):
        save_checkpoint(tmp_path / "y.safetensors", {"w": torch.zeros(1)}, {})
    assert not list(tmp_path.iterdir())  # nothing half-written

    for name, config in (("bad", "{not json"), ("list", json.dumps([1, 2]))):
        p = tmp_path / f"{name}.safetensors"
        meta = {"format": FORMAT, "kind": "Tiny", "config": config}
        save_file({"w": torch.zeros(2)}, str(p), metadata=meta)
        with pytest.raises(CheckpointError, match=rf"{name}\.safetensors: config metadata is not"):
            load_checkpoint(p)
    # The whole metadata as one JSON object, whose config is an object, not JSON text.
    p = tmp_path / "object.safetensors"
    save_file({"w": torch.zeros(2)}, str(p),
              metadata={"mbo": json.dumps({"format": FORMAT, "kind": "Tiny", "config": {"dim": 3}})})
    with pytest.raises(CheckpointError, match=r"object\.safetensors: its metadata's 'config' is not text"):
        load_checkpoint(p)


def test_the_same_model_gives_the_same_bytes(tmp_path):
    from mbo.checkpoint import file_sha256

    model = tiny()
    digests = {file_sha256(save_checkpoint(tmp_path / f"{i}.safetensors", model)) for i in range(5)}
    assert len(digests) == 1  # provenance records the sha256 of a checkpoint: it must follow the contents


def test_weights_sha256_follows_the_weights_not_the_metadata(tmp_path):
    from mbo.checkpoint import weights_sha256

    model = tiny()
    # A prior's metadata records its training wall time: two trainings of the same weights differ there.
    a = save_checkpoint(tmp_path / "a.safetensors", model, {**model.config, "trained": {"seconds": 1.0}})
    b = save_checkpoint(tmp_path / "b.safetensors", model, {**model.config, "trained": {"seconds": 2.0}})
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    assert weights_sha256(save_checkpoint(tmp_path / "c.safetensors", model)) != weights_sha256(a)
    with pytest.raises(CheckpointError, match=r"missing\.safetensors cannot be read"):
        weights_sha256(tmp_path / "missing.safetensors")
