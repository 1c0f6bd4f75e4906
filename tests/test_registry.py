"""The one registry mechanism: register, look up (errors list the names), lazy module import."""

from __future__ import annotations

import sys

import pytest

from guardmatch.errors import GuardmatchError, UnknownNameError
from guardmatch.registry import Registry


def test_register_get_names_contains():
    things: Registry[object] = Registry("thing")

    @things.register("b")
    class B:
        pass

    @things.register("a")
    class A:
        pass

    assert things.get("a") is A and A.name == "a"
    assert things.names() == ["a", "b"] and "b" in things and "c" not in things
    with pytest.raises(UnknownNameError, match=r"^unknown thing 'c'; available: a, b$") as err:
        things.get("c")
    assert isinstance(err.value, (KeyError, ValueError, GuardmatchError))
    with pytest.raises(ValueError, match="already registered"):
        things.register("a")(B)


def test_modules_are_imported_on_first_lookup_only(tmp_path, monkeypatch):
    (tmp_path / "gm_lazy_things.py").write_text(
        "from guardmatch.registry import Registry\nTHINGS = Registry('thing', modules=('gm_lazy_members',))\n")
    (tmp_path / "gm_lazy_members.py").write_text(
        "from gm_lazy_things import THINGS\n\n@THINGS.register('x')\nclass X:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gm_lazy_things

    assert "gm_lazy_members" not in sys.modules
    assert gm_lazy_things.THINGS.names() == ["x"]
    assert "gm_lazy_members" in sys.modules


def test_every_registry_lists_its_members():
    from guardmatch.algorithms import ALGORITHMS, POLICIES
    from guardmatch.augment.backends import BACKENDS
    from guardmatch.augment.registry import AUGMENTERS
    from guardmatch.grid.baselines import BASELINES
    from guardmatch.review.routing import STRATEGIES

    assert ALGORITHMS.names() == ["fixmatch", "marginmatch", "multimatch", "supervised"]
    assert POLICIES.names() == ["fixed", "flexmatch", "freematch", "none"]
    assert AUGMENTERS.names() == ["backtranslation", "eda", "llm-backtranslation", "llm-rewrite"]
    assert BACKENDS.names() == ["llama-cpp", "openai", "transformers"]
    assert BASELINES.names() == ["setfit", "tfidf_lr"]
    assert "margin" in STRATEGIES.names()
    for registry in (ALGORITHMS, POLICIES, AUGMENTERS, BACKENDS, BASELINES, STRATEGIES):
        assert all(registry.get(n).name == n for n in registry.names())
