"""nnlab.results: round trips, stale and damaged results, atomic and concurrent writes."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import tiny_experiments as T
import torch

from nnlab import experiments as E
from nnlab import results as store
from nnlab import runner
from nnlab.book import problems as P
from nnlab.data import ArrayData
from nnlab.models import mlp
from nnlab.train import TrainConfig

HELPER = Path(T.__file__)
NAME = T.TINY.name


def record(seed: int, **metrics):
    """Store one run of the tiny experiment with a seeded model; return the model."""
    model = T.seeded_model(T.TINY.variants[0].spec, seed)
    store.record_run(NAME, "main", seed, {"val_acc": 0.5, "test_acc": 0.5, **metrics}, model)
    return model


def outputs(model) -> torch.Tensor:
    x, _ = T.synthetic_mnist("val")
    with torch.no_grad():
        return model.eval()(x[:64])


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_round_trip(tiny_experiment):
    values = {0: 1 / 3, 1: 0.1 + 0.2}  # floats that a lossy format would change
    models = {s: record(s, test_acc=v, val_acc=1 - v, history={"val_loss": [v, v / 7]})
              for s, v in values.items()}
    data = store.load(NAME)
    assert data["config_hash"] == T.TINY.config_hash()
    for s, v in values.items():
        run = data["runs"][store.run_key("main", s)]
        assert run["test_acc"] == v and run["val_acc"] == 1 - v
        assert run["history"] == {"val_loss": [v, v / 7]}
        assert run["seed"] == s and run["variant"] == "main"
        assert run["source_hash"] == store.source_hash()
        loaded = store.load_model(NAME, seed=s)
        assert not loaded.training
        assert torch.equal(outputs(loaded), outputs(models[s]))
    s = store.summary(NAME)
    assert s["seeds"] == [0, 1] and s["n"] == 2
    assert s["mean"] == statistics.fmean(values.values())
    assert s["std"] == statistics.stdev(values.values())
    assert (s["min"], s["max"]) == (min(values.values()), max(values.values()))
    assert [r["seed"] for r in store.runs(NAME)] == [0, 1]
    assert store.status(NAME).state == "ok"


def test_training_run_round_trips_through_the_store(tiny_experiment):
    runner.run_experiment(NAME, device="cpu", log=lambda msg: None)
    for seed in T.TINY.seeds:
        run = store.load(NAME)["runs"][store.run_key("main", seed)]
        model = store.load_model(NAME, seed=seed)
        x, y = T.synthetic_mnist("test")
        with torch.no_grad():
            acc = (model(x).argmax(1) == y).double().mean().item()
        assert acc == pytest.approx(run["test_acc"], abs=1e-12)
        assert run["hidden_units"] == 16 and run["hidden_layers"] == 1
        assert len(run["history"]["val_acc"]) == T.TINY.train.epochs
    # finished runs are not trained again
    said = []
    runner.run_experiment(NAME, device="cpu", log=said.append)
    assert said == [f"[{NAME}] all 2 run(s) stored and current, nothing to train (retrain them with --fresh)"]
    # no checkpoints are left behind
    assert not list((store.experiment_dir(NAME) / ".checkpoints").glob("*"))


def test_missing_result_names_the_command(tiny_experiment):
    with pytest.raises(store.MissingResult, match=f"nnlab train {NAME}"):
        store.load(NAME)
    with pytest.raises(store.MissingResult):
        store.summary(NAME)


def test_changed_config_makes_the_result_stale(tiny_experiment, register_experiment):
    record(0, test_acc=0.5)
    record(1, test_acc=0.6)
    register_experiment(replace(T.TINY, train=replace(T.TINY.train, lr=1e-2)))
    for call in (store.load, store.summary, store.runs, store.load_model):
        with pytest.raises(store.StaleResult) as info:
            call(NAME)
        assert repr(NAME) in str(info.value)
        assert f"`nnlab train {NAME}`" in str(info.value)
    assert store.status(NAME).state == "stale"
    assert "variant(s) main changed since their runs were trained (main: recipe)" in store.status(NAME).detail
    # a changed spec, rule or data is a changed config too, and the status says which
    other_data = ArrayData("synthetic-10", train=T.synthetic_mnist("train"), val=T.synthetic_mnist("val"),
                           test=T.synthetic_mnist("test"), normalise=False, description="another description")
    spec = ("flatten", "linear 17", "relu", "linear 10")
    for changed, what in ((replace(T.TINY, variants=(E.Variant("main", spec),)), "model"),
                          (replace(T.TINY, rules=P.MLP_200), "rules"),
                          (replace(T.TINY, data=other_data), "data"),
                          (replace(T.TINY, rules=P.MLP_200, variants=(E.Variant("main", spec, train=replace(
                              T.TINY.train, epochs=3)),)), "model, recipe, rules")):
        register_experiment(changed)
        assert store.status(NAME).state == "stale"
        assert f"variant(s) main changed since their runs were trained (main: {what});" in store.status(NAME).detail
        assert store.changes(NAME) == f"variant(s) main changed since their runs were trained (main: {what})"
    register_experiment(T.TINY)
    assert store.changes(NAME) is None


def course_source(shift: float):
    """A course's own DataSource, as its module defines it: each call is the module's code
    as it stands in a new process; ``shift`` is an edit of ``load`` that leaves
    ``describe`` as it was."""
    from nnlab.data import SPLITS, DataSource

    class Blobs(DataSource):
        name, input_shape, num_classes = "course-blobs", (4,), 2

        def describe(self) -> dict:
            return {"dataset": "course-blobs"}

        def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.randn(64, 4, generator=torch.Generator().manual_seed(SPLITS.index(split)))
            return x + shift, (x[:, 0] > 0).long()

    return Blobs()


def test_a_course_source_whose_data_changed_makes_its_runs_stale(results_dir, register_experiment):
    assert course_source(0.0).fingerprint() == course_source(0.0).fingerprint() != course_source(0.5).fingerprint()
    exp = register_experiment(E.Experiment(
        name="test-course", purpose="a course's source", chapter="tests", variants=(
            E.Variant("mlp", ("linear 8", "relu", "linear 2")),), train=TrainConfig(epochs=5, batch_size=16, lr=1e-2),
        seeds=(0,), data=course_source(0.0)))
    runner.run_experiment(exp, device="cpu", log=lambda line: None)
    assert store.status(register_experiment(replace(exp, data=course_source(0.0)))).state == "ok"
    edited = register_experiment(replace(exp, data=course_source(0.5)))
    assert edited.variant_hashes() == exp.variant_hashes()  # its description did not change
    status = store.status(edited)
    assert status.state == "stale" and ("variant(s) mlp changed since their runs were trained "
                                        "(mlp: data (its fingerprint differs))") in status.detail
    assert store.stored_current_runs(edited) == {}


def test_a_new_seed_or_variant_keeps_the_stored_runs(tiny_experiment, register_experiment):
    runner.run_experiment(NAME, device="cpu", log=lambda msg: None)
    path = store.experiment_dir(NAME) / "result.json"
    before = json.loads(path.read_text())["runs"]
    weights = {p.name: p.read_bytes() for p in (store.experiment_dir(NAME) / "weights").iterdir()}
    wider = E.Variant("wide", tuple(mlp([32], classes=10)))
    grown = register_experiment(replace(T.TINY, variants=(*T.TINY.variants, wider), seeds=(0, 1, 2)))
    st = store.status(NAME)
    assert st.state == "incomplete" and "4 run(s) missing" in st.detail
    assert set(store.load(NAME, allow_incomplete=True)["runs"]) == set(before)
    trained = []
    runner.run_experiment(NAME, device="cpu", log=trained.append)
    assert len(trained) == 4 and all("wide" in m or "seed=2" in m for m in trained)
    data = store.load(NAME)
    assert data["config_hash"] == grown.config_hash()
    assert {k: data["runs"][k] for k in before} == before  # kept as they were
    for name, blob in weights.items():
        assert (store.experiment_dir(NAME) / "weights" / name).read_bytes() == blob
    # removing the variant and the seed again hides their runs without losing the others
    register_experiment(T.TINY)
    assert store.status(NAME).state == "ok"
    assert set(store.load(NAME)["runs"]) == set(before)
    assert store.summary(NAME)["seeds"] == [0, 1]


def test_changing_one_variant_retrains_only_its_runs(tiny_experiment, register_experiment):
    two = register_experiment(replace(T.TINY, variants=(*T.TINY.variants, E.Variant("wide", tuple(mlp([32], classes=10))))))
    runner.run_experiment(NAME, device="cpu", log=lambda msg: None)
    before = store.load(NAME)["runs"]
    register_experiment(replace(two, variants=(two.variants[0], E.Variant("wide", tuple(mlp([24], classes=10))))))
    st = store.status(NAME)
    assert st.state == "stale" and "wide" in st.detail and "main" not in st.detail
    with pytest.raises(store.StaleResult):
        store.load(NAME)
    trained = []
    runner.run_experiment(NAME, device="cpu", log=trained.append)
    said, *trained = trained
    assert said == (f"[{NAME}] stale: variant(s) wide changed since their runs were trained (wide: model); "
                    "training their runs again")
    assert len(trained) == 2 and all(" wide " in m for m in trained)
    after = store.load(NAME)["runs"]
    assert all(after[k] == before[k] for k in before if k.startswith("main/"))
    assert all(after[k]["parameters"] != before[k]["parameters"] for k in before if k.startswith("wide/"))
    # one weights file per stored run: the stale runs' files are gone
    assert len(list((store.experiment_dir(NAME) / "weights").iterdir())) == 4


def test_a_result_without_a_readable_config_is_damaged(tiny_experiment):
    record(0, test_acc=0.5)
    path = store.experiment_dir(NAME) / "result.json"
    raw = json.loads(path.read_text())
    del raw["config"]["variants"]
    path.write_text(json.dumps(raw))
    st = store.status(NAME)
    assert st.state == "damaged" and str(path) in st.detail and f"nnlab train {NAME}" in st.detail


@pytest.mark.parametrize("content", [
    b'{"schema": 1, "runs": {',  # cut short
    b"\x89PNG\r\n\x1a\n\x00\xff",  # not even text
    b"[]",  # JSON, but not a result
    b'{"schema": 1, "runs": []}',
    b"",
])
def test_damaged_json_is_reported(tiny_experiment, content):
    record(0, test_acc=0.5)
    path = store.experiment_dir(NAME) / "result.json"
    path.write_bytes(content)
    with pytest.raises(store.DamagedResult) as info:
        store.load(NAME)
    assert str(path) in str(info.value) and f"nnlab train {NAME}" in str(info.value)
    assert store.status(NAME).state == "damaged"
    # a new run is not stored over it: the runs it may still hold are never dropped silently
    with pytest.raises(store.DamagedResult, match="not storing run main/seed=1"):
        record(1, test_acc=0.25)
    assert path.read_bytes() == content
    with pytest.raises(store.DamagedResult, match="--fresh"):
        runner.run_experiment(NAME, device="cpu")  # refused before anything trains
    # only when asked (nnlab train --fresh) is it replaced by a valid result
    store.record_run(NAME, "main", 1, {"val_acc": 0.25, "test_acc": 0.25},
                     T.seeded_model(T.TINY.variants[0].spec, 1), replace_damaged=True)
    assert json.loads(path.read_text())["runs"].keys() == {"main/seed=1"}


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "swap"])
def test_damaged_weights_are_refused(tiny_experiment, damage):
    record(0, test_acc=0.5)
    record(1, test_acc=0.5)
    runs = store.load(NAME)["runs"]
    path = store.experiment_dir(NAME) / runs["main/seed=0"]["weights"]["file"]
    blob = path.read_bytes()
    if damage == "flip":
        path.write_bytes(blob[:-9] + bytes([blob[-9] ^ 1]) + blob[-8:])
    elif damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "delete":
        path.unlink()
    else:  # another run's (valid) weights in this run's place
        path.write_bytes((store.experiment_dir(NAME) / runs["main/seed=1"]["weights"]["file"]).read_bytes())
    with pytest.raises(store.DamagedResult) as info:
        store.load_model(NAME, seed=0)
    assert str(path) in str(info.value)
    assert ("sha256" in str(info.value)) != (damage == "delete")
    store.load_model(NAME, seed=1)  # the other run is untouched


def test_load_or_train_trains_what_is_missing(tiny_experiment):
    data = runner.load_or_train(NAME, device="cpu")
    assert set(data["runs"]) == {"main/seed=0", "main/seed=1"}
    # incomplete: only the missing run is trained, the stored one is kept as it is
    before = store.load(NAME)["runs"]["main/seed=0"]
    path = store.experiment_dir(NAME) / "result.json"
    raw = json.loads(path.read_text())
    del raw["runs"]["main/seed=1"]
    path.write_text(json.dumps(raw))
    assert store.status(NAME).state == "incomplete"
    data = runner.load_or_train(NAME, device="cpu")
    assert data["runs"]["main/seed=0"] == before and "main/seed=1" in data["runs"]


def test_load_or_train_refuses_stale_unless_asked(tiny_experiment, register_experiment):
    record(0, test_acc=0.5)
    record(1, test_acc=0.5)
    changed = register_experiment(replace(T.TINY, train=replace(T.TINY.train, epochs=1)))
    with pytest.raises(store.StaleResult):
        runner.load_or_train(NAME, device="cpu")
    data = runner.load_or_train(NAME, retrain_stale=True, device="cpu")
    assert data["config_hash"] == changed.config_hash()
    assert all(len(r["history"]["val_acc"]) == 1 for r in data["runs"].values())
    # the old runs' weights are gone with them: one file per stored run
    assert len(list((store.experiment_dir(NAME) / "weights").iterdir())) == 2


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in all_files(root) if p.name != ".lock"}


@pytest.mark.parametrize("fail_at", ["json-replace", "weights-replace", "fsync"])
def test_interrupted_write_keeps_the_previous_result(tiny_experiment, fail_at):
    old_model = record(0, test_acc=0.5)
    record(1, test_acc=0.5)
    before = snapshot(store.results_root())
    real_replace, real_fsync = os.replace, os.fsync

    def failing_replace(src, dst):
        target = Path(dst).name
        if (fail_at == "json-replace" and target == "result.json") or (
                fail_at == "weights-replace" and target.endswith(".safetensors")):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    def failing_fsync(fd):
        real_fsync(fd)
        raise OSError(5, "Input/output error")

    new_model = T.seeded_model(T.TINY.variants[0].spec, 99)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", failing_replace)
        if fail_at == "fsync":
            mp.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError):
            store.record_run(NAME, "main", 0, {"val_acc": 0.9, "test_acc": 0.9}, new_model)
    assert snapshot(store.results_root()) == before  # no file changed, none added, none left over
    assert store.load(NAME)["runs"]["main/seed=0"]["test_acc"] == 0.5
    assert torch.equal(outputs(store.load_model(NAME, seed=0)), outputs(old_model))
    # and the next write succeeds and replaces the run (and its weights) as a whole
    store.record_run(NAME, "main", 0, {"val_acc": 0.9, "test_acc": 0.9}, new_model)
    assert torch.equal(outputs(store.load_model(NAME, seed=0)), outputs(new_model))
    assert len(list((store.experiment_dir(NAME) / "weights").iterdir())) == 2


def test_concurrent_writers_never_corrupt_the_result(tiny_experiment, register_experiment, tmp_path):
    per_process = 12
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    seeds = [list(range(0, 2 * per_process, 2)), list(range(1, 2 * per_process, 2))]
    procs = [subprocess.Popen([sys.executable, str(HELPER), "record", NAME, "--barrier", str(barrier),
                               *map(str, s)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for s in seeds]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()
    path = store.experiment_dir(NAME) / "result.json"
    data = json.loads(path.read_text())  # valid JSON
    assert set(data["runs"]) == {store.run_key("main", s) for s in range(2 * per_process)}
    register_experiment(replace(T.TINY, seeds=tuple(range(2 * per_process))))  # seeds 2-23 count too
    for s in range(2 * per_process):
        assert data["runs"][store.run_key("main", s)]["val_acc"] == s / 1000
        loaded = store.load_model(NAME, seed=s)  # every run's weights match their sha256
        assert torch.equal(outputs(loaded), outputs(T.seeded_model(T.TINY.variants[0].spec, s)))
    assert not [p for p in all_files(store.results_root()) if ".tmp" in p.name]


def test_chosen_variant_by_validation_accuracy_then_loss(tiny_experiment, register_experiment):
    spec = T.TINY.variants[0].spec
    register_experiment(replace(T.TINY, variants=(E.Variant("a", spec), E.Variant("b", spec), E.Variant("c", spec))))
    model = T.seeded_model(spec, 0)
    # equal mean accuracy for a and b, summed in another order; b has the lower loss; c is less
    # accurate but has the lowest loss of all, and the test set never enters the choice
    runs = {"a": [(0.9954, 0.02), (0.9950, 0.02)], "b": [(0.9950, 0.01), (0.9954, 0.01)],
            "c": [(0.9950, 0.001), (0.9950, 0.001)]}
    for variant, pairs in runs.items():
        for seed, (acc, loss) in enumerate(pairs):
            store.record_run(NAME, variant, seed, {"val_acc": acc, "val_loss": loss,
                                                   "test_acc": 1.0 if variant == "c" else 0.5}, model)
    assert store.chosen_variant(NAME) == "b"


def test_a_run_fit_on_train_and_val_is_stored_without_validation(tiny_experiment, register_experiment, capsys):
    exp = register_experiment(replace(tiny_experiment, train=replace(tiny_experiment.train, fit_on="train+val")))
    runner.run_experiment(exp.name, device="cpu")
    assert store.status(exp.name).state == "ok"
    for r in store.runs(exp.name):
        assert r["val_acc"] is None and r["history"]["val_acc"] == [] and r["test_acc"] > 0.5
    log = capsys.readouterr().err
    assert "test_acc=" in log and "val_acc" not in log
    assert store.summary(exp.name)["n"] == 2


def test_validation_cannot_choose_among_variants_fit_on_it(tiny_experiment, register_experiment):
    both = replace(tiny_experiment.train, fit_on="train+val")
    exp = register_experiment(replace(tiny_experiment, variants=(
        tiny_experiment.variants[0], E.Variant("wide", tuple(mlp([32], classes=10)), both))))
    with pytest.raises(ValueError, match=r"cannot choose a variant on validation: wide trained on the validation"):
        store.chosen_variant(exp.name)
