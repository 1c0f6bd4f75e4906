"""Threshold profiles: stored in a saved model, chosen per request in the server and per run in predict."""

import json
import shutil

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from guardmatch.errors import ConfigError, UnknownNameError  # noqa: E402
from guardmatch.model import GuardClassifierConfig, ThresholdProfile, save_threshold_profile  # noqa: E402
from guardmatch.serving.app import PROFILE_HEADER, ServerConfig, create_app, load_served_model  # noqa: E402


@pytest.fixture()
def profiled_dir(serving_prompt_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(serving_prompt_dir, path)
    save_threshold_profile(path, "eu-chat", ThresholdProfile(threshold=0.01, method="manual", details={"note": "strict"}))
    save_threshold_profile(path, "kids", ThresholdProfile(threshold=0.99, method="label-shift:em"))
    return path


def test_profiles_are_stored_in_both_configs_and_validated(profiled_dir):
    cfg = GuardClassifierConfig.model_validate_json((profiled_dir / "guardmatch.json").read_text())
    assert cfg.threshold_for("eu-chat") == 0.01 and cfg.threshold_for(None) == cfg.threshold
    assert cfg.threshold_profiles["eu-chat"].details == {"note": "strict"}
    hf = json.loads((profiled_dir / "config.json").read_text())
    assert hf["guardmatch"]["threshold_profiles"]["kids"]["threshold"] == 0.99
    with pytest.raises(UnknownNameError, match="unknown threshold profile 'us'; available: default, eu-chat, kids"):
        cfg.threshold_for("us")
    with pytest.raises(ConfigError, match="threshold profile name"):
        save_threshold_profile(profiled_dir, "default", ThresholdProfile(threshold=0.3, method="manual"))
    with pytest.raises(ConfigError, match="threshold profile name"):
        save_threshold_profile(profiled_dir, "a b", ThresholdProfile(threshold=0.3, method="manual"))


def test_server_chooses_the_profile_per_request(profiled_dir):
    served = load_served_model(profiled_dir, "tiny")
    with TestClient(create_app(served, None)) as c:
        body = {"prompt": "How do I bake bread?"}
        default = c.post("/v1/classify", json=body).json()["prompt_harm"]
        strict = c.post("/v1/classify", json=body, headers={PROFILE_HEADER: "eu-chat"}).json()["prompt_harm"]
        lax = c.post("/v1/classify", json=body, headers={PROFILE_HEADER: "kids"}).json()["prompt_harm"]
        assert default["profile"] == "default" and default["threshold"] == served.threshold
        assert (strict["profile"], strict["threshold"], strict["flagged"]) == ("eu-chat", 0.01, strict["score"] >= 0.01)
        assert (lax["threshold"], lax["flagged"]) == (0.99, lax["score"] >= 0.99)
        assert strict["score"] == lax["score"] == default["score"]
        mod = c.post("/v1/moderations", json={"input": ["a", "b"]}, headers={PROFILE_HEADER: "eu-chat"}).json()
        assert [r["flagged"] for r in mod["results"]] == [r["category_scores"]["harmful"] >= 0.01 for r in mod["results"]]
        bad = c.post("/v1/classify", json=body, headers={PROFILE_HEADER: "nope"})
        assert bad.status_code == 400
        err = bad.json()["error"]
        assert err["param"] == PROFILE_HEADER and err["code"] == "unknown_profile" and "eu-chat" in err["message"]
        health = c.get("/healthz").json()
        assert health["models"]["prompt"]["threshold_profiles"] == {"eu-chat": 0.01, "kids": 0.99}
    with TestClient(create_app(served, None, ServerConfig(default_profile="kids"))) as c:
        assert c.post("/v1/classify", json={"prompt": "x"}).json()["prompt_harm"]["profile"] == "kids"
    with pytest.raises(ConfigError, match="--threshold-profile"):
        create_app(served, None, ServerConfig(default_profile="nope"))


def test_batch_prediction_uses_the_profile(profiled_dir, tmp_path):
    from guardmatch.serving.batch import predict_file

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"text number {i}"}) + "\n" for i in range(5)))
    predict_file(profiled_dir, src, tmp_path / "a.jsonl", profile="eu-chat")
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert {(r["threshold"], r["profile"]) for r in rows} == {(0.01, "eu-chat")}
    assert all(r["flagged"] == (r["p_harmful"] >= 0.01) for r in rows)
    with pytest.raises(UnknownNameError):
        predict_file(profiled_dir, src, tmp_path / "b.jsonl", profile="nope")
