"""Grid config: validation, cell expansion, directories, config hashes, widened pools."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from guardmatch.config import deep_merge
from guardmatch.data.example import Task
from guardmatch.errors import ConfigError
from guardmatch.grid import cell_config, config_hash, expand, load_grid_config
from guardmatch.grid.cells import Cell, pool_sources
from guardmatch.grid.runner import parse_only


def _grid(tmp_path, **extra):
    data = {
        "name": "g", "output_dir": str(tmp_path / "out"),
        "base": {"optim": {"max_steps": 10}, "data": {"allow_hub": False}},
        "tasks": {"prompt": {"pools": ["in_source", "widened"]},
                  "response": {"overrides": {"data": {"train": "response_pool"}, "model": {"max_length": 256}},
                               "baseline_params": {"setfit": {"max_length": 256}}}},
        "methods": {"supervised": {"algorithm": "supervised"}, "fixmatch": {"algorithm": "fixmatch"},
                    "multimatch": {"algorithm": "multimatch", "params": {"recalibrate_every": 5}}},
        "augmenters": {"eda": {"cache": "eda"}, "llm": {"cache": "llm-rewrite", "tasks": ["prompt"]}},
        "pools": {"in_source": {}, "widened": {"extra_unlabeled": ["prompt_pool"], "budgets": [200],
                                               "augmenters": ["eda"]}},
        "budgets": [200, "all"], "seeds": [0, 1],
        "baselines": {"tfidf": {"kind": "tfidf_lr"}, "setfit": {"kind": "setfit", "params": {"max_steps": 5}}},
    }
    data.update(extra)
    return load_grid_config(data=data)


def test_expansion_runs_supervised_once_and_ssl_per_augmenter(tmp_path):
    grid = _grid(tmp_path)
    cells = expand(grid)
    by = Counter((c.task.value, c.pool, c.kind, c.arm, str(c.budget)) for c in cells)
    # supervised: once per (task, budget, seed), on the first pool, without an augmenter
    assert by[("prompt", "in_source", "run", "supervised", "200")] == 2
    assert by[("prompt", "widened", "run", "supervised", "200")] == 0
    # SSL x every augmenter that applies to the task; none at budget "all" (no unlabeled data left)
    assert by[("prompt", "in_source", "run", "fixmatch-eda", "200")] == 2
    assert by[("prompt", "in_source", "run", "fixmatch-llm", "200")] == 2
    assert by[("prompt", "in_source", "run", "fixmatch-eda", "all")] == 0
    assert by[("response", "in_source", "run", "fixmatch-llm", "200")] == 0  # llm is prompt-only
    # the widened pool: only its budgets and augmenters
    assert by[("prompt", "widened", "run", "multimatch-eda", "200")] == 2
    assert not any(k[1] == "widened" and (k[4] == "all" or k[3].endswith("-llm")) for k in by)
    # baselines on the first pool only, every budget
    assert by[("prompt", "in_source", "baseline", "tfidf", "all")] == 2
    assert not any(k[1] == "widened" and k[2] == "baseline" for k in by)
    assert len({c.key for c in cells}) == len(cells)
    # seed-major: every cell of seed 0 comes before any of seed 1
    seeds = [c.seed for c in cells]
    assert seeds == sorted(seeds)


def test_cell_directories_and_configs(tmp_path):
    grid = _grid(tmp_path, baselines_dir=str(tmp_path / "shared"))
    cell = Cell(Task.PROMPT, "in_source", "run", "fixmatch", "eda", 200, 1)
    assert cell.path(grid) == tmp_path / "out" / "prompt" / "in_source" / "fixmatch-eda" / "200" / "seed1"
    cfg = cell_config(grid, cell)
    assert (cfg.algorithm, cfg.seed, cfg.data.labels, cfg.views.cache) == ("fixmatch", 1, 200, "eda")
    assert cfg.output_dir == str(cell.path(grid)) and cfg.optim.max_steps == 10
    resp = Cell(Task.RESPONSE, "in_source", "run", "multimatch", "eda", "all", 0)
    rcfg = cell_config(grid, resp)
    assert rcfg.data.task is Task.RESPONSE and rcfg.data.train == "response_pool" and rcfg.model.max_length == 256
    assert rcfg.algorithm_params == {"recalibrate_every": 5} and rcfg.data.labels == "all"
    base = Cell(Task.PROMPT, "in_source", "baseline", "tfidf", None, 200, 0)
    assert base.path(grid) == tmp_path / "shared" / "prompt" / "in_source" / "tfidf" / "200" / "seed0"
    assert grid.baseline_spec(Task.RESPONSE, "setfit").params == {"max_steps": 5, "max_length": 256}
    assert grid.baseline_spec(Task.PROMPT, "setfit").params == {"max_steps": 5}


def test_config_hash_tracks_what_is_computed(tmp_path):
    grid = _grid(tmp_path)
    cell = Cell(Task.PROMPT, "in_source", "run", "fixmatch", "eda", 200, 0)
    h = config_hash(grid, cell, cell_config(grid, cell))
    # bookkeeping and locations do not change it
    moved = _grid(tmp_path, output_dir=str(tmp_path / "elsewhere"), base={"optim": {"max_steps": 10},
                                                                           "data": {"allow_hub": True},
                                                                           "threads": 2, "save_every": 7})
    assert config_hash(moved, cell, cell_config(moved, cell)) == h
    # what is trained does
    longer = _grid(tmp_path, base={"optim": {"max_steps": 11}})
    assert config_hash(longer, cell, cell_config(longer, cell)) != h
    # baselines ignore the training mode and optimiser: two grids share them
    base = Cell(Task.PROMPT, "in_source", "baseline", "tfidf", None, 200, 0)
    frozen = _grid(tmp_path, base={"mode": "frozen", "optim": {"max_steps": 999}})
    assert config_hash(frozen, base, cell_config(frozen, base)) == config_hash(grid, base, cell_config(grid, base))


def test_min_coverage_per_task_keeps_the_other_tasks_hash(tmp_path):
    grid = _grid(tmp_path, augmenters={"eda": {"cache": "eda", "min_coverage": 0.8}})
    per_task = _grid(tmp_path, augmenters={"eda": {"cache": "eda", "min_coverage": {"prompt": 0.8, "response": 0.6}}})
    prompt = Cell(Task.PROMPT, "in_source", "run", "fixmatch", "eda", 200, 0)
    response = Cell(Task.RESPONSE, "in_source", "run", "fixmatch", "eda", 200, 0)
    assert cell_config(per_task, prompt).views.min_coverage == 0.8
    assert cell_config(per_task, response).views.min_coverage == 0.6
    # the prompt cell computes the same thing under either spelling: its archived result still counts
    assert config_hash(per_task, prompt, cell_config(per_task, prompt)) == config_hash(grid, prompt, cell_config(grid, prompt))
    assert config_hash(per_task, response, cell_config(per_task, response)) != config_hash(
        grid, response, cell_config(grid, response))
    # a task the mapping leaves out needs full coverage
    assert _grid(tmp_path, augmenters={"eda": {"cache": "eda", "min_coverage": {"prompt": 0.5}}}
                 ).augmenters["eda"].coverage_for("response") == 1.0
    with pytest.raises(ConfigError, match=r"min_coverage must lie in \[0, 1\], got 1.5"):
        _grid(tmp_path, augmenters={"eda": {"cache": "eda", "min_coverage": {"response": 1.5}}})


def test_bad_references_and_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown pool 'nope'"):
        _grid(tmp_path, tasks={"prompt": {"pools": ["nope"]}})
    with pytest.raises(ConfigError, match="tasks.prompt.methods: unknown method 'sft'"):
        _grid(tmp_path, tasks={"prompt": {"methods": ["sft"]}})
    with pytest.raises(ConfigError, match="budget"):
        _grid(tmp_path, budgets=[1])
    # every run's config is validated when the grid loads, before any data is read
    with pytest.raises(ConfigError, match="tasks.prompt x methods.supervised: optim.max_stepz: Extra inputs"):
        _grid(tmp_path, base={"optim": {"max_stepz": 3}})
    with pytest.raises(ConfigError, match="methods.fixmatch: algorithm_params of fixmatch: treshold"):
        _grid(tmp_path, methods={"fixmatch": {"algorithm": "fixmatch", "params": {"treshold": 0.9}}})
    with pytest.raises(ConfigError, match="methods.sft: algorithm: unknown algorithm 'sft'; available: fixmatch"):
        _grid(tmp_path, methods={"sft": {"algorithm": "sft"}})
    with pytest.raises(ConfigError, match=r"baselines.svm: unknown baseline 'svm'; available: setfit, tfidf_lr"):
        _grid(tmp_path, baselines={"setfit": {"kind": "setfit"}, "svm": {"kind": "svm"}})
    with pytest.raises(ConfigError, match=r"tasks.response.baseline_params: setfit: unknown parameter\(s\) \['max_len'\]"):
        _grid(tmp_path, tasks={"prompt": {}, "response": {"baseline_params": {"setfit": {"max_len": 9}}}})
    with pytest.raises(ConfigError, match=r"baselines.setfit: setfit: precision must be one of \['fp32', 'bf16'\]"):
        _grid(tmp_path, baselines={"setfit": {"kind": "setfit", "params": {"precision": "fp16"}}})
    with pytest.raises(ConfigError, match="colour"):
        load_grid_config(data={"tasks": {"prompt": {}}, "methods": {}, "colour": 1})


def test_deep_merge_and_only_filters():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}, "x.y": 4}) == {"a": {"b": 3, "c": 2}, "x": {"y": 4}}
    only = parse_only(["task=prompt", "method=fixmatch,supervised", "budget=200"])
    assert only == {"task": {"prompt"}, "method": {"fixmatch", "supervised"}, "budget": {"200"}}
    cell = Cell(Task.PROMPT, "in_source", "run", "fixmatch", "eda", 200, 0)
    assert cell.matches(only) and not cell.matches({"seed": {"1"}})
    with pytest.raises(ValueError, match="unknown axis"):
        cell.matches({"colour": {"red"}})


def test_shipped_configs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("paper_cpu.yaml", "paper_cpu_frozen.yaml", "paper.yaml", "quickstart.yaml", "quickstart_llm.yaml"):
        grid = load_grid_config(root / name)
        cells = expand(grid)
        assert cells and all(cell_config(grid, c).data.task is c.task for c in cells[:50])
    # the MPNet grid is the MiniLM grid through `extends`, differing in exactly these keys
    minilm = load_grid_config(root / "paper_cpu_frozen.yaml").model_dump(mode="json")
    mpnet = load_grid_config(root / "paper_cpu_frozen_mpnet.yaml").model_dump(mode="json")
    assert mpnet["base"]["model"].pop("encoder") == "mpnet" and minilm["base"]["model"].pop("encoder") == "minilm"
    assert {k for k in minilm if minilm[k] != mpnet[k]} == {"name", "description", "output_dir"}
    # the MPNet top-layer grid is paper_cpu's headline row: an empty budget list turns the inherited
    # response task off, explicit lists restrict the prompt task
    headline = load_grid_config(root / "paper_cpu_mpnet.yaml")
    runs = Counter((c.task.value, c.pool, c.method, c.augmenter, str(c.budget)) for c in expand(headline)
                   if c.kind == "run")
    assert runs == {("prompt", "in_source", "supervised", None, "200"): 3,
                    ("prompt", "in_source", "supervised-880", None, "200"): 3,
                    **{("prompt", "in_source", m, "llm-rewrite", "200"): 3
                       for m in ("fixmatch", "marginmatch", "multimatch", "fixmatch-da")}}
    assert cell_config(headline, expand(headline)[0]).model.encoder == "mpnet"
    # the added row is FixMatch with distribution alignment; SetFit (MiniLM) is paper_cpu's baseline (the
    # same cells, so the same hash), SetFit (MPNet) fine-tunes this row's body and is the goal's baseline
    assert headline.methods["fixmatch-da"].params == {"distribution_alignment": True, "da_momentum": 0.99}
    # the schedule ablation: supervised for the SSL cells' step count
    long_sup = next(c for c in expand(headline) if c.method == "supervised-880")
    assert cell_config(headline, long_sup).optim.max_steps == 880
    assert cell_config(headline, long_sup).optim.epochs is None
    paper_cpu = load_grid_config(root / "paper_cpu.yaml")
    setfit = next(c for c in expand(headline) if c.method == "setfit")
    assert config_hash(headline, setfit, cell_config(headline, setfit)) == \
        config_hash(paper_cpu, setfit, cell_config(paper_cpu, setfit))
    assert headline.baselines["setfit-mpnet"].params["body"] == "mpnet"
    assert "precision" not in headline.baselines["setfit-mpnet"].params  # fp32: bf16 squeezes the head
    assert headline.report.goals.beat_baseline == "setfit-mpnet"


def test_widened_pool_materializes_distinct_unlabeled_prompts(tmp_path, shared_data):
    grid = _grid(tmp_path, pools={"in_source": {}, "widened": {"extra_unlabeled": ["prompt_pool"],
                                                               "prompts_from": ["response_pool"]}},
                 base={"data": {"data_dir": str(shared_data), "allow_hub": False}})
    sources = pool_sources(grid, Task.PROMPT, "widened")
    assert sources[0] == "prompt_pool"
    rows = [json.loads(line) for line in open(sources[1])]
    prompts = [r["prompt"] for r in rows]
    assert len(prompts) == len(set(prompts)) > 1000  # BeaverTails + SafeRLHF repeat prompts
    assert all(r["label"] is None and r["response"] is None for r in rows)
    from guardmatch.data.suites import load_dataset

    train = {e.prompt for e in load_dataset("wildguardtrain", "prompt", data_dir=shared_data).examples}
    assert not train & set(prompts)
    with pytest.raises(ConfigError, match="prompt task"):
        pool_sources(grid, Task.RESPONSE, "widened")


def test_extra_view_caches_are_merged_read_only(tmp_path, train_slice):
    from pathlib import Path

    from grid_helpers import write_views

    from guardmatch.augment.cache import ViewCache
    from guardmatch.grid.cells import merged_views

    a = write_views(tmp_path / "a", train_slice[:40], name="m")
    b = write_views(tmp_path / "b", train_slice[40:], name="m")
    grid = _grid(tmp_path, augmenters={"m": {"cache": str(a), "extra_caches": [str(b)]}}, pools={"in_source": {}},
                 tasks={"prompt": {}})
    path = Path(merged_views(grid, "m"))
    assert path == tmp_path / "out" / "views" / "m"
    assert ViewCache.open(a).coverage(train_slice, "prompt") == 0.5
    assert ViewCache.open(path).coverage(train_slice, "prompt") == 1.0
    merged_views(grid, "m")  # rebuilt in place, nothing duplicated or copied
    shards = list((path / "shards").iterdir())
    assert len(shards) == 2 and all(s.is_symlink() for s in shards)
    # the cell hash names the caches, not the merged directory
    cell = Cell(Task.PROMPT, "in_source", "run", "fixmatch", "m", 200, 0)
    assert config_hash(grid, cell, cell_config(grid, cell, views_cache=str(path))) == \
        config_hash(grid, cell, cell_config(grid, cell))
    other = write_views(tmp_path / "c", train_slice, name="other")
    bad = _grid(tmp_path, augmenters={"m": {"cache": str(a), "extra_caches": [str(other)]}},
                pools={"in_source": {}}, tasks={"prompt": {}})
    with pytest.raises(ConfigError, match="different augmenter config"):
        merged_views(bad, "m")
