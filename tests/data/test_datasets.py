"""Every dataset form the harness reads gives the same problems; filters and task ids behave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data.generations import join_by_task_id, load_generations
from harness.data.problems import (
    Selection,
    load_problems,
    load_split,
    parse_skills,
    select,
)
from harness.errors import DatasetError, GenerationsError

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "problems.jsonl"


def _rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def _summary(problems):
    return [(p.task_id, p.difficulty, p.skills, p.tests) for p in problems]


def test_every_local_form_gives_the_same_problems(tmp_path):
    import datasets

    reference = _summary(load_problems(SAMPLE))
    rows = _rows()
    assert len(reference) == len(rows) == 6

    as_json = tmp_path / "rows.json"
    as_json.write_text(json.dumps(rows))
    decoded = tmp_path / "decoded.json"  # input_output already decoded, as some mirrors store it
    decoded.write_text(json.dumps([{**r, "input_output": json.loads(r["input_output"])} for r in rows]))
    dataset = datasets.Dataset.from_list(rows)
    parquet = tmp_path / "test-00000-of-00001.parquet"
    dataset.to_parquet(str(parquet))
    saved_dict = tmp_path / "saved_dict"
    datasets.DatasetDict({"test": dataset, "train": dataset.select([0])}).save_to_disk(str(saved_dict))
    saved_one = tmp_path / "saved_one"
    dataset.save_to_disk(str(saved_one))
    shards = tmp_path / "shards"  # the official layout: <dir>/test/data-00000-of-00001.arrow
    (shards / "test").mkdir(parents=True)
    for arrow in saved_one.glob("*.arrow"):
        (shards / "test" / "data-00000-of-00001.arrow").write_bytes(arrow.read_bytes())
    parquet_dir = tmp_path / "parquet_dir" / "ALL"
    parquet_dir.mkdir(parents=True)
    (parquet_dir / "test-00000-of-00001.parquet").write_bytes(parquet.read_bytes())

    for source in (as_json, decoded, parquet, saved_dict, saved_one, shards, tmp_path / "parquet_dir"):
        assert _summary(load_problems(source)) == reference, source
    assert [p.task_id for p in load_problems(saved_dict, split="train")] == [0]


def test_filters_combine_and_task_ids_are_split_indices():
    everything = load_split(SAMPLE)
    easy = select(everything, Selection(difficulties=("EASY",)))
    assert [p.task_id for p in easy] == [p.task_id for p in everything if p.difficulty == "EASY"]
    assert easy and all(p.difficulty == "EASY" for p in easy)
    skill = next(p.skills[0] for p in everything if p.difficulty == "EASY" and p.skills)
    with_skill = select(everything, Selection(skills=(skill,)))
    assert all(skill in p.skills for p in with_skill)
    both = select(everything, Selection(difficulties=("EASY", "MEDIUM"), skills=(skill,)))
    assert both and {p.task_id for p in both} == {
        p.task_id for p in everything if p.difficulty in ("EASY", "MEDIUM") and skill in p.skills
    }
    assert len(both) < len(everything)
    assert [p.task_id for p in select(everything, Selection(indices=(4, 1)))] == [1, 4]
    assert [p.task_id for p in select(everything, Selection(limit=2))] == [0, 1]
    assert select(everything, Selection(difficulties=("ALL",))) == everything
    with pytest.raises(DatasetError, match="no task ids 99"):
        select(everything, Selection(indices=(99,)))
    with pytest.raises(DatasetError, match="no problems left"):
        select(everything, Selection(difficulties=("NOPE",)))


def test_skill_types_in_both_encodings():
    assert parse_skills("['Data structures', 'Sorting']") == ("Data structures", "Sorting")
    assert parse_skills(["Greedy algorithms"]) == ("Greedy algorithms",)
    assert parse_skills("[]") == () and parse_skills(None) == ()


def test_subset_files_keep_their_task_ids(tmp_path):
    rows = _rows()
    subset = tmp_path / "subset.jsonl"
    subset.write_text("\n".join(json.dumps({**r, "_task_id": 100 + i}) for i, r in enumerate(rows)))
    assert [p.task_id for p in load_problems(subset)] == [100 + i for i in range(len(rows))]
    duplicate = tmp_path / "dup.jsonl"
    duplicate.write_text("\n".join(json.dumps({**r, "_task_id": 7}) for r in rows[:2]))
    with pytest.raises(DatasetError, match="both have task_id 7"):
        load_problems(duplicate)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "not valid JSON"),
        (b'{"a": 1}', "expected a JSON list"),
        (b'[{"question": "q"}]', "no 'input_output'"),
        (b'[{"input_output": "{\\"inputs\\": 3}"}]', "input_output"),
        (b"\xff\xfe[]", "not UTF-8"),
    ],
)
def test_bad_datasets_fail_with_one_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as info:
        load_problems(path)
    assert "\n" not in str(info.value)


def test_missing_dataset_and_unreachable_hub():
    with pytest.raises(DatasetError, match="dataset not found"):
        load_problems("no/such/file.jsonl")
    with pytest.raises(DatasetError, match="Hugging Face hub") as info:
        load_problems("BAAI/TACO")  # no hub access here (and HF_HUB_OFFLINE in the tests)
    assert "\n" not in str(info.value)


def test_generations_official_json_and_jsonl_agree(tmp_path):
    entries = [{"task_id": 3, "prompt": "p", "output": ["a", "b"]}, {"task_id": 1, "output": ["c"]}]
    as_json = tmp_path / "generations.json"
    as_json.write_text(json.dumps(entries, indent=4))
    as_jsonl = tmp_path / "generations.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    assert load_generations(as_json) == load_generations(as_jsonl)
    assert [(g.task_id, g.outputs) for g in load_generations(as_json)] == [(3, ("a", "b")), (1, ("c",))]


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"task_id": 1, "output": ["a"]}, {"task_id": 1, "output": ["b"]}], "appears more than once"),
        ([{"task_id": "x", "output": ["a"]}], "task_id must be an integer"),
        ([{"task_id": 1, "output": "a"}], "list of strings"),
        ([{"task_id": 1, "output": []}], "is empty"),
        ([{"output": ["a"]}], "needs 'task_id' and 'output'"),
        ({"task_id": 1}, "expected a JSON list"),
        ([], "no generations"),
    ],
)
def test_bad_generations_fail_with_one_line(tmp_path, entries, message):
    path = tmp_path / "generations.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(GenerationsError, match=message):
        load_generations(path)


def test_join_is_by_task_id_not_position(tmp_path):
    problems = load_split(SAMPLE)
    path = tmp_path / "g.json"
    path.write_text(json.dumps([{"task_id": t, "output": [f"# {t}"]} for t in (5, 0, 3, 1, 4, 2)]))
    joined = join_by_task_id(problems, load_generations(path))
    assert [(t.problem.task_id, t.outputs) for t in joined] == [(t, (f"# {t}",)) for t in range(6)]

    path.write_text(json.dumps([{"task_id": t, "output": ["x"]} for t in (0, 1, 2, 3, 4, 5, 17)]))
    with pytest.raises(GenerationsError, match="absent from the dataset: 17"):
        join_by_task_id(problems, load_generations(path))
    path.write_text(json.dumps([{"task_id": t, "output": ["x"]} for t in (0, 1)]))
    with pytest.raises(GenerationsError, match="without generations: 2, 3, 4, 5"):
        join_by_task_id(problems, load_generations(path))
    assert [t.problem.task_id for t in join_by_task_id(problems, load_generations(path), allow_partial=True)] == [0, 1]
    # A filter leaves problems out: their generations are ignored, unknown ids still are not.
    easy = select(problems, Selection(indices=(1,)))
    assert [t.problem.task_id for t in join_by_task_id(easy, load_generations(path), False, {0, 1, 2, 3, 4, 5})] == [1]
