import json
from typing import get_args

import pytest
import yaml
from pydantic import Field

import trainer.distributed
from aztrain.domain import documents
from aztrain.domain.errors import ManifestError
from aztrain.domain.manifest import (
    ComputeSpec,
    Distribution,
    JobManifest,
    TrainerSpec,
    manifest_schema,
    parse_duration,
    parse_manifest,
)
from aztrain.service.settings import PROJECT_ROOT

VALID = """
apiVersion: aztrain/v1
kind: TrainingJob
name: digits-classifier
data: {container: datasets, prefix: digits}
"""


@pytest.fixture(autouse=True, params=["libyaml", "pure"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs on both YAML loaders: libyaml where installed, and the pure-Python fallback."""
    if request.param == "pure":
        monkeypatch.setattr(documents, "_UniqueKeyLoader", documents._PureUniqueKeyLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")


def problems(text: str, **kwargs: int) -> list[str]:
    with pytest.raises(ManifestError) as err:
        parse_manifest(text, source="manifests/x.yaml", **kwargs)
    return [str(p) for p in err.value.problems]


def test_example_manifest_parses_with_defaults_filled_in():
    manifest = parse_manifest((PROJECT_ROOT / "examples" / "digits.yaml").read_text())
    assert manifest.name == "digits-classifier"
    assert manifest.compute.max_runtime == 1800
    assert manifest.retrain is not None and manifest.retrain.debounce == 20  # seconds, for a first try
    assert manifest.watches_data


def test_prefix_is_normalised_to_a_folder_and_hash_ignores_formatting():
    a = parse_manifest(VALID)
    b = parse_manifest(
        json.dumps(
            {
                "apiVersion": "aztrain/v1",
                "kind": "TrainingJob",
                "name": "digits-classifier",
                "data": {"prefix": "digits/", "container": "datasets"},
            }
        )
    )
    assert a.data.prefix == "digits/"
    assert a.content_hash == b.content_hash
    assert parse_manifest(VALID.replace("digits}", "other}")).content_hash != a.content_hash


def test_a_defaulted_field_the_schema_gains_changes_no_hash_and_a_default_written_out_counts_as_unset():
    class NewTrainer(TrainerSpec):
        warm_start: bool = False  # a field a later version adds, with a default

    class NewManifest(JobManifest):
        trainer: NewTrainer = Field(default_factory=NewTrainer)
        notes: str = ""

    today = parse_manifest(VALID)
    assert NewManifest.model_validate(today.normalised()).content_hash == today.content_hash
    assert parse_manifest(VALID + "compute: {nodes: 1, profile: gpu-small}\n").content_hash == today.content_hash
    assert parse_manifest(VALID + "compute: {nodes: 2}\n").content_hash != today.content_hash


def test_unknown_fields_are_named_with_the_fix():
    found = problems(VALID + "compute: {gpus: 4}\nretrian: {}\n")
    assert "compute.gpus: unknown field; remove it or check its spelling against `aztrain schema`" in found
    assert any(p.startswith("retrian: unknown field") for p in found)


def test_wrong_types_and_ranges_name_the_field():
    found = problems(VALID + "compute: {nodes: 0, processes_per_node: '4', max_runtime: soon}\n")
    assert any(p.startswith("compute.nodes: input should be greater than or equal to 1") for p in found)
    assert any(p.startswith("compute.processes_per_node:") for p in found)
    assert any("compute.max_runtime: 'soon' is not a duration" in p for p in found)


def test_missing_fields_bad_name_and_entrypoint():
    found = problems("apiVersion: aztrain/v1\nkind: TrainingJob\nname: Bad_Name\ntrainer: {entrypoint: 'rm -rf /'}\n")
    assert "data: required field is missing" in found
    assert any(p.startswith("name: use 3-63 lowercase letters") for p in found)
    assert any(p.startswith("trainer.entrypoint: 'rm -rf /' is not allowed") for p in found)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: [", "not valid YAML or JSON at line 1"),
        ("- just\n- a list\n", "expected a mapping"),
        ("", "document is empty"),
        ("# only a comment\n", "expected a mapping"),
    ],
)
def test_malformed_documents(text, expected):
    assert expected in problems(text)[0]


def test_oversize_documents_are_rejected_before_parsing():
    assert problems(VALID + "#" * 2000, max_bytes=1024) == [
        f"document is {len(VALID) + 2000} bytes; the limit is 1024 bytes"
    ]


def test_retrain_needs_a_prefix():
    text = VALID.replace("prefix: digits", "prefix: ''") + "retrain: {on_data_arrival: true}\n"
    assert any("needs data.prefix" in p for p in problems(text))


@pytest.mark.parametrize("raw, seconds", [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), (45, 45)])
def test_durations(raw, seconds):
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "0s", "ten minutes", True, -5, 1.5])
def test_bad_durations(raw):
    with pytest.raises(ValueError):
        parse_duration(raw)


def test_schema_is_generated_from_the_model_and_forbids_extras():
    schema = manifest_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"apiVersion", "kind", "name", "data"}
    assert schema["$defs"]["ComputeSpec"]["properties"]["nodes"]["maximum"] == 64


def test_the_distribution_defaults_to_horovod_and_is_one_the_trainer_runs_under():
    assert parse_manifest(VALID).trainer.distribution == "horovod"
    assert parse_manifest(VALID + "trainer: {distribution: pytorch}\n").trainer.distribution == "pytorch"
    assert problems(VALID + "trainer: {distribution: mpi}\n") == [
        "trainer.distribution: input should be 'horovod' or 'pytorch'"
    ]
    # The manifest offers exactly the distributions the trainer implements (it runs where aztrain is not installed).
    assert get_args(Distribution) == trainer.distributed.NAMES
    schema = manifest_schema()["$defs"]["TrainerSpec"]["properties"]["distribution"]
    assert schema["enum"] == ["horovod", "pytorch"] and schema["default"] == "horovod"


def test_trainer_arguments_are_checked_at_submit_by_the_entrypoint():
    found = problems(VALID + "trainer: {args: {epochs: five, lr: 0.1, dropout: 0.5}}\n")
    assert any(p.startswith("trainer.args.epochs: expected int, got str 'five'") for p in found)
    assert any(p.startswith("trainer.args.dropout: unknown argument; known: batch_size, epochs") for p in found)


def test_every_problem_is_named_in_one_answer_schema_arguments_and_compute_alike():
    def too_many_nodes(compute: ComputeSpec) -> None:
        raise ManifestError.at("compute.nodes", f"{compute.nodes} is more than the 2 node(s) the profile allows")

    text = VALID + "extra: 1\ntrainer: {args: {epochs: five, dropout: 0.5}}\ncompute: {nodes: 3}\n"
    with pytest.raises(ManifestError) as refused:
        parse_manifest(text.replace("digits-classifier", "Bad_Name"), compute_check=too_many_nodes)
    fields = [problem.field for problem in refused.value.problems]
    assert fields == ["name", "extra", "trainer.args.epochs", "trainer.args.dropout", "compute.nodes"]


def test_duplicate_keys_are_rejected_not_silently_merged():
    found = problems(VALID + "compute: {nodes: 1}\ncompute: {nodes: 8}\n")
    assert found == ["not valid YAML or JSON at line 7, column 1: duplicate key 'compute'; each field may appear once"]


def test_tags_are_refused():
    found = problems(VALID + "extra: !!python/object/apply:os.system ['true']\n")
    assert found[0].startswith("not valid YAML or JSON at line 6")


def test_deep_nesting_is_refused_before_parsing():
    assert problems(VALID + "x: " + "[" * 40 + "]" * 40 + "\n") == ["document nests 40 levels deep; the limit is 32"]


CODE = "code-" + "0" * 24


@pytest.mark.parametrize(
    "trainer, problem",
    [
        ({"entrypoint": "train.py"}, "trainer.entrypoint: 'train.py' is not allowed without trainer.code"),
        ({"code": "./src"}, "trainer.code: './src' is not a code snapshot id"),
        ({"code": CODE, "entrypoint": "../train.py"}, "trainer.entrypoint: '../train.py': a path inside the code"),
        ({"code": CODE, "entrypoint": "/abs/train.py"}, "must not start with '/'"),
        ({"code": CODE, "entrypoint": "rm -rf /"}, "neither a module"),
        ({"code": CODE, "args": {"a b": 1}}, "trainer.args.a b: not a flag name"),
        ({"code": CODE, "args": {"mode": "--evil"}}, "trainer.args.mode: '--evil' starts with '-'"),
        ({"environment": {"image": "x", "registered": "y@1"}}, "trainer.environment: name exactly one of"),
        ({"environment": "no-version"}, "trainer.environment.registered: string should match pattern"),
        ({"environment": {"requirements": "requirements.txt"}}, "requirements names a file of trainer.code"),
        ({"code": CODE, "environment": {"requirements": "../r.txt"}}, "a path inside the code snapshot"),
    ],
)
def test_user_code_entrypoints_args_and_environments_are_checked(trainer, problem):
    found = problems(json.dumps({**yaml.safe_load(VALID), "trainer": trainer}))
    assert any(problem.lower() in p.lower() for p in found), found


def test_a_user_programs_typed_args_and_a_registered_environment_shorthand_parse():
    trainer = {"code": CODE, "entrypoint": "pkg.train", "args": {"epochs": 3, "lr": 0.1, "fast": True, "name": "x"}}
    manifest = parse_manifest(json.dumps({**yaml.safe_load(VALID), "trainer": {**trainer, "environment": "env@3"}}))
    assert manifest.trainer.code == CODE and not manifest.trainer.builtin
    assert manifest.trainer.environment is not None and manifest.trainer.environment.registered == "env@3"
    assert manifest.trainer.environment.kind == "registered"
