from pathlib import Path

import pytest
import yaml

from comp.config import Config, HeadConfig, load_config, save_config
from comp.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    # the file's own values survive validation: every key it sets reads back as written
    raw = yaml.safe_load(path.read_text()) or {}
    for section, values in raw.items():
        if isinstance(values, dict) and section != "tune":
            for key, value in values.items():
                got = getattr(getattr(cfg, section), key)
                assert _plain(got) == _plain(value), f"{path.name}: {section}.{key} = {got!r}, the file says {value!r}"
        elif section != "tune":
            assert _plain(getattr(cfg, section)) == _plain(values), f"{path.name}: {section}"


def _plain(value):
    """A config value comparable with what YAML read: models as dicts, tuples as lists."""
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_nycu_recipe_matches_the_seeds():
    cfg = load_config(ROOT / "configs" / "resnet50-nycu.yaml")
    assert cfg.model.name == "resnet50.tv2_in1k" and cfg.model.head == "V1"
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 1e-4, 1e-3)
    assert (cfg.sched.name, cfg.sched.cycle_epochs, cfg.sched.min_lr) == ("cosine", 80, 1e-5)
    assert (cfg.data.batch_size, cfg.data.image_size) == (64, 224)
    assert cfg.aug.color_jitter == (0.2, 0.2, 0.2, 0.1) and cfg.aug.rotate == 10 and cfg.aug.translate == 0.1


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(UserError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "optim.lrr" in msg and "optim.lr" in msg.split("did you mean")[1]


def test_unknown_section(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("trian:\n  epochs: 3\n")
    with pytest.raises(UserError, match=r"unknown key 'trian'.*did you mean 'train'"):
        load_config(p)


def test_wrong_type_names_key_and_value(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochs: many\n")
    with pytest.raises(UserError, match=r"bad.yaml: bad value for 'train.epochs'.*'many'"):
        load_config(p)


def test_overrides_parse_yaml_values(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 0.1\n")
    cfg = load_config(p, ["optim.lr=3e-4", "aug.scale=[0.35, 1]", "model.trainable=2", "train.patience=null"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.aug.scale == (0.35, 1.0)
    assert cfg.model.trainable == 2
    assert cfg.train.patience is None


def test_override_errors_name_the_override(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("{}\n")
    with pytest.raises(UserError, match=r"--set train.epoch: unknown key 'train.epoch'; did you mean 'train.epochs'"):
        load_config(p, ["train.epoch=3"])
    with pytest.raises(UserError, match=r"expected key=value"):
        load_config(p, ["train.epochs"])
    with pytest.raises(UserError, match=r"--set data.batch_size: bad value"):
        load_config(p, ["data.batch_size=-1"])


def test_head_presets_and_free_form(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  head: {hidden: [256, 64], activation: gelu, dropout: 0.2, bn: true}\n")
    cfg = load_config(p)
    assert cfg.model.head == HeadConfig(hidden=[256, 64], activation="gelu", dropout=0.2, bn=True)
    assert load_config(p, ["model.head=v3"]).model.head == "V3"
    with pytest.raises(UserError, match=r"model.head.*unknown head preset 'V9'"):
        load_config(p, ["model.head=V9"])
    with pytest.raises(UserError, match=r"unknown key 'model.head.hiden'"):
        load_config(p, ["model.head.hiden=[3]"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("data: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(p)


def test_save_round_trip(tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["model.head={hidden: [32]}"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg


def test_yaml_booleans_mean_the_documented_words(tmp_path):
    # YAML 1.1 reads on/off/yes/no as booleans, in files and in --set values alike.
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  cache: off\ntrain:\n  amp: off\n")
    cfg = load_config(p, ["data.cache=on"])
    assert (cfg.data.cache, cfg.train.amp) == ("on", "off")
    assert load_config(p).data.cache == "off"
    assert load_config(p, ["train.ema=yes"]).train.ema is True  # a real boolean key stays a boolean


@pytest.mark.parametrize("override, key", [("model.trainable=yes", "model.trainable"), ("train.epochs=on", "train.epochs"),
                                           ("train.amp=on", "train.amp")])
def test_a_boolean_is_never_read_as_a_number_or_a_guess(tmp_path, override, key):
    p = tmp_path / "c.yaml"
    p.write_text("{}\n")
    with pytest.raises(UserError, match=f"--set {key}: bad value .*got 'true'"):
        load_config(p, [override])  # pydantic alone read True as 1 (one trainable stage, one epoch)
