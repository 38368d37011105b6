"""Typed configuration: YAML files in `configs/`, `--set a.b=c` overrides, resolved copy per run.

Every section refuses unknown keys and wrong types (pydantic, `extra="forbid"`), so a typo is an
error naming the key and the file instead of a silent default. Defaults are the seeds' NYCU recipe
where one exists; the trailing comment on a field says what to try.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from comp.errors import UserError

HEAD_PRESETS = ("V0", "V1", "V2", "V3", "V4")


# YAML 1.1 (PyYAML, and so every config file and --set value) reads on/off/yes/no/true/false as
# booleans. Where a key takes words, the boolean means the word the user typed (`cache: on`).
_BOOL_WORDS = {True: ("on", "yes", "true"), False: ("off", "no", "false")}


def _annotation_parts(annotation: Any) -> list[Any]:
    """`annotation` and everything nested in it (Optional, Union, Literal, tuple arguments)."""
    parts = [annotation]
    for arg in get_args(annotation):
        parts += _annotation_parts(arg)
    return parts


def _yaml_bool(value: bool, annotation: Any) -> Any:
    """A YAML boolean for a field of this annotation: the word it stands for, or itself for a bool field.

    A field that takes neither a bool nor such a word gets the boolean's name as a string, so
    validation fails with "got 'true'" instead of pydantic quietly reading True as the number 1.
    """
    parts = _annotation_parts(annotation)
    if bool in parts:
        return value
    words = {a for p in parts if get_origin(p) is Literal for a in get_args(p)}
    for word in _BOOL_WORDS[value]:
        if word in words:
            return word
    return str(value).lower()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _yaml11_booleans(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {
                k: _yaml_bool(v, cls.model_fields[k].annotation) if isinstance(v, bool) and k in cls.model_fields else v
                for k, v in data.items()
            }
        return data


class DataConfig(_Section):
    dir: Optional[str] = None  # competition folder; `--data DIR` sets it
    image_size: Optional[int] = Field(None, ge=16)  # None: the backbone's pretrained input size
    crop_pct: Optional[float] = Field(None, gt=0, le=1)  # eval resize = size / crop_pct, then center crop; None: backbone's
    mean: Optional[tuple[float, float, float]] = None  # None: the backbone's pretrained normalization
    std: Optional[tuple[float, float, float]] = None
    batch_size: int = Field(64, gt=0)  # 64 fits ResNet50 at 224 px on one 16 GB GPU
    workers: int = Field(2, ge=0)  # DataLoader processes (file path) / decoding threads (cache)
    cache: Literal["auto", "on", "off"] = "auto"  # decode-once cache (memory-mapped uint8 squares); auto: when it fits cache_max_gb
    cache_max_gb: float = Field(10.0, gt=0)  # disk budget of one cache file for data.cache: auto (2,000 photos at 224 px: 0.4 GB)
    cache_dir: Optional[str] = None  # None: $COMP_CACHE_DIR or ~/.cache/comp
    val_fraction: float = Field(0.1, gt=0, lt=1)  # stratified hold-out when there is no val/ split
    split_seed: Optional[int] = Field(None, ge=0)  # seed of the hold-out and the folds; None: train.seed (--seeds fixes it to the first seed)
    train_on_val: bool = False  # train on every labelled image (val/ included, no hold-out); no val scores; k-fold folds still hold out
    id_column: Optional[str] = None  # CSV layout: train.csv id column; None: detected
    label_column: Optional[str] = None  # CSV layout: train.csv label column; None: detected
    train_images: Optional[str] = None  # CSV layout: the training images' folder (relative to dir); None: where train.csv's ids resolve
    test_images: Optional[str] = None  # CSV layout: the test images' folder; None: where the sample's ids resolve
    # CSV layout: one label per image, several (space-separated tags, or one 0/1 column per class), an integer grade scored
    # in order (ordinal: kappa at fitted cut-points) or a number (regression); auto: detected, asked when unclear (ordinal is never guessed)
    task: Literal["auto", "single", "multilabel", "ordinal", "regression"] = "auto"
    # regression: [lo, hi] predictions are clipped to (and train.loss=bce scales by); None: the training targets' range, recorded in the run
    target_range: Optional[tuple[float, float]] = None
    # regression (and an ordinal regression head): (mean, std) the target is standardized by; fitted on the training rows and recorded by the run (leave unset)
    target_scale: Optional[tuple[float, float]] = None
    # multi-label: an image with no tag at or above its threshold gets its most probable tag (Kaggle's tag metrics score an empty row 0); false: left empty
    at_least_one_tag: bool = True
    positive_class: Optional[str] = None  # binary: the class whose probability roc_auc and a one-column submission use; None: the second class
    # prediction CSV shape; auto: from sample_submission.csv and the metric; tags / onehot: multi-label
    submission: Literal["auto", "label", "probs", "positive", "topk", "tags", "onehot", "grade", "value"] = "auto"
    sampler: Literal["uniform", "balanced"] = "uniform"  # balanced: every class drawn equally often per epoch (imbalanced data)

    @field_validator("target_range")
    @classmethod
    def _ordered_range(cls, v: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if v is not None and not v[0] < v[1]:
            raise ValueError("target_range is [lo, hi] with lo < hi")
        return v

    @field_validator("target_scale")
    @classmethod
    def _positive_scale(cls, v: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if v is not None and not v[1] > 0:
            raise ValueError("target_scale is [mean, std] with std > 0")
        return v

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: Optional[tuple[float, float, float]]) -> Optional[tuple[float, float, float]]:
        if v is not None and min(v) <= 0:
            raise ValueError("every std must be > 0 (images are divided by it)")
        return v


class HeadConfig(_Section):
    """A free-form head: pooled features -> [Linear -> (BN) -> act -> Dropout] x len(hidden) -> Linear."""

    hidden: list[Annotated[int, Field(gt=0)]] = []  # e.g. [512] or [1024, 256]; [] is a linear head
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)  # after each hidden layer
    bn: bool = False  # BatchNorm1d after each hidden Linear


class ModelConfig(_Section):
    name: str = "resnet50.tv2_in1k"  # any timm name; tag picks the weights (.tv_in1k = torchvision V1)
    pretrained: str = "hub"  # hub | none | bundled | /path/to/weights.pth
    head: Union[HeadConfig, str] = "V1"  # V0 linear .. V4, or a free-form mapping (see HeadConfig)
    dropout: Optional[float] = Field(None, ge=0, lt=1)  # overrides every dropout of the head; None: the preset's
    drop_path_rate: float = Field(0.0, ge=0, lt=1)  # stochastic depth inside the backbone; try 0.1 for big nets
    trainable: Union[Literal["all", "head"], int] = "all"  # all | head | N = the last N stages + head

    @field_validator("head")
    @classmethod
    def _known_preset(cls, v: Union[HeadConfig, str]) -> Union[HeadConfig, str]:
        if isinstance(v, str) and v.upper() not in HEAD_PRESETS:
            raise ValueError(f"unknown head preset {v!r}; use one of {', '.join(HEAD_PRESETS)} or a mapping")
        return v.upper() if isinstance(v, str) else v

    @field_validator("trainable")
    @classmethod
    def _non_negative(cls, v: Union[str, int]) -> Union[str, int]:
        if isinstance(v, int) and v < 0:
            raise ValueError("trainable stages must be >= 0")
        return v


class OptimConfig(_Section):
    name: str = "adamw"  # adamw | sgd | adam, or any name in timm.optim.list_optimizers()
    lr: float = Field(1e-4, gt=0)  # head lr; fine-tuning: 1e-4 (AdamW), 1e-2 (SGD)
    weight_decay: float = Field(1e-3, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    nesterov: bool = False  # SGD only
    backbone_lr_mult: float = Field(1.0, ge=0)  # backbone lr = lr * this; try 0.1 for small data


class SchedConfig(_Section):
    name: str = "cosine"  # cosine | step | multistep | poly | constant | none (timm's scheduler factory)
    warmup_epochs: float = Field(0.0, ge=0)  # linear warmup, fractions allowed (stepped per iteration)
    warmup_lr: float = Field(1e-6, ge=0)
    min_lr: float = Field(1e-5, ge=0)  # eta_min
    cycle_epochs: Optional[int] = Field(None, gt=0)  # cosine T_max; None: train.epochs


class OofTargetsConfig(_Section):
    """`train.oof_targets`: each training image's target blended with a k-fold run's out-of-fold prediction (Plant Pathology 2020)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
    from_: str = Field(alias="from")  # a k-fold run whose oof.csv covers the training images
    mix: float = Field(0.3, gt=0, le=1)  # target = (1 - mix) * label + mix * oof


class _Teachers(_Section):
    """A second round's teachers, `from:` (one run, a list, or nothing)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
    from_: list[str] = Field(default_factory=list, alias="from")  # teacher runs (k-fold: per fold) or *_probs.csv tables; [] = off

    @field_validator("from_", mode="before")
    @classmethod
    def _one_run(cls, v: Any) -> Any:
        return [] if v is None else [v] if isinstance(v, str) else v


class PseudoConfig(_Teachers):
    """`pseudo`: the competition's test images join training with the teachers' predictions as targets (comp/teach/)."""

    threshold: Optional[float] = Field(None, ge=0, le=1)  # keep only test images the teachers are this sure of; None: all
    hard: bool = False  # learn the teachers' decision (argmax, tags at 0.5, rounded grade) instead of their probabilities
    # a pseudo-labelled image's loss against a labelled one's; 0.5 keeps the labels heard among many test images
    # (2,000 labels + 8,000 test images: 0.5 beat 1.0 by 0.9 points and 0.25 by 0.1 on a fold, docs/second-rounds.md)
    weight: float = Field(0.5, gt=0)
    leak_ok: bool = False  # accept teachers that trained on this run's validation images (its CV is then optimistic)
    final_epochs: int = Field(0, ge=0)  # the last N epochs train on the real labels only


class DistillConfig(_Teachers):
    """`distill` (`comp distill`): a student learns the teachers' merged predictions beside the labels (timm's LogitDistillationTask)."""

    alpha: float = Field(0.5, ge=0, le=1)  # loss = (1 - alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T)
    temperature: float = Field(1.0, gt=0)  # softens both distributions (timm's examples: 1-4); values (grades, numbers) ignore it
    test: bool = True  # also learn the teachers' predictions on the competition's test images (KL only)


class TrainConfig(_Section):
    epochs: int = Field(10, gt=0)
    patience: Optional[int] = Field(None, gt=0)  # early stop after N epochs without a new best.pt (a better val metric; ties: lower val loss)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    mixup: float = Field(0.0, ge=0)  # Beta(alpha) of mixup; 0 = off, try 0.2
    cutmix: float = Field(0.0, ge=0)  # Beta(alpha) of cutmix; 0 = off, try 1.0
    mix_prob: float = Field(1.0, ge=0, le=1)  # share of batches that get mixup/cutmix when on
    grad_clip: Optional[float] = Field(None, gt=0)  # max grad norm; try 1.0
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on CUDA, off on CPU
    ema: bool = False  # evaluate and keep an exponential moving average of the weights
    ema_decay: float = Field(0.999, gt=0, lt=1)
    channels_last: bool = True  # NHWC memory format; faster convolutions on CPU and tensor cores
    seed: int = 42
    folds: int = Field(1, ge=1)  # 1 = one model with a hold-out; K >= 2 = stratified K-fold (`--folds K`)
    seeds: int = Field(1, ge=1)  # N >= 2: N runs differing only in train.seed (seed, seed+1, ...), RUN/seed_<s>/, one split (`--seeds N`)
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    # torch intra-op threads; auto: this process's cores divided among the comp trainings running on the machine
    threads: Union[Literal["auto"], Annotated[int, Field(gt=0)]] = "auto"
    compile: bool = False  # torch.compile the model (worth it on GPUs for long runs; first steps are slow)
    checkpoint_minutes: float = Field(10.0, ge=0)  # also save last.pt mid-epoch this often; 0 = epoch ends only
    # Imbalanced classes: loss weights none | balanced (n / (C * n_c), sklearn) | [w1, ...] in class order | {class: w}
    class_weights: Union[Literal["none", "balanced"], list[Annotated[float, Field(gt=0)]], dict[str, Annotated[float, Field(gt=0)]]] = "none"
    # auto: the task's default (ce; ordinal smooth_l1; regression mse). focal: (1 - p)^gamma down-weights the easy images;
    # multi-label: ce is per-tag binary cross-entropy, asl timm's asymmetric loss; ordinal: smooth_l1 | mse | corn (coral-pytorch);
    # regression: mse | smooth_l1 | l1 on the standardized target, bce on the target scaled into [0, 1] by data.target_range
    loss: Literal["auto", "ce", "focal", "asl", "smooth_l1", "mse", "l1", "bce", "corn"] = "auto"
    focal_gamma: float = Field(2.0, ge=0)
    oof_targets: Optional[OofTargetsConfig] = None  # {from: KFOLD_RUN, mix: 0.3}: targets blended with its out-of-fold predictions

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_auto(cls, v: Any) -> Any:
        return "auto" if v is None else v  # configs saved before "auto" wrote null for torch's default

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights_spec(cls, v: Any) -> Any:
        if v is None:
            return "none"
        if isinstance(v, dict):  # YAML reads class names like 0 or 1.5 as numbers
            return {str(k): w for k, w in v.items()}
        return v


class AugConfig(_Section):
    """Train-time transforms (albumentations, file path). Defaults = the seeds' NYCU recipe."""

    scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range; try (0.35, 1) for small data
    ratio: tuple[float, float] = (0.75, 4 / 3)
    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.0, ge=0, le=1)  # on for top-down imagery (satellite, microscopy)
    color_jitter: Optional[tuple[float, float, float, float]] = (0.2, 0.2, 0.2, 0.1)  # brightness, contrast, saturation, hue
    rotate: float = Field(10.0, ge=0)  # degrees, +-
    translate: float = Field(0.1, ge=0, lt=1)  # fraction of the size, +-
    erase: float = Field(0.0, ge=0, le=1)  # random erasing (Cutout-like) probability; try 0.25
    trivial_augment: bool = False  # TrivialAugmentWide (cached path: one op per group of 8 images)

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError("scale is [min, max] with 0 < min <= max <= 1 (shares of the image area)")
        return v

    @field_validator("ratio")
    @classmethod
    def _ratio_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("ratio is [min, max] with 0 < min <= max (width / height)")
        return v


class TTAConfig(_Section):
    """Test-time augmentation used by `comp predict --tta` / `comp evaluate --tta` (see comp/tta.py)."""

    views: list[str] = ["identity", "hflip"]  # e.g. [identity, hflip, rot10, rot-10, crop0.9, scale1.15]
    merge: Literal["mean", "geometric", "logit"] = "mean"  # mean of probabilities; geometric = logit (mean of logits)

    @field_validator("views")
    @classmethod
    def _known_views(cls, v: list[str]) -> list[str]:
        from comp.tta import parse_views  # checked when the config loads, not first at predict time

        try:
            return parse_views(v)
        except UserError as e:
            raise ValueError(str(e)) from None


class TuneConfig(_Section):
    """`comp tune`: an Optuna search over config keys (comp/tune.py); no part of a run's recipe."""

    # dotted config key -> {float: [lo, hi]} | {log: [lo, hi]} | {int: [lo, hi]} | {choice: [a, b, ...]}
    space: dict[str, dict[str, list[Any]]] = {}
    trials: int = Field(20, gt=0)  # the study's total of finished (complete or pruned) trials, over all its workers
    timeout: Optional[float] = Field(None, gt=0)  # minutes one worker searches at most; None: until `trials`
    sampler: Literal["tpe", "random", "grid"] = "tpe"  # grid: every combination of a space of choices and ints
    pruner: Literal["median", "hyperband", "none"] = "median"  # stops trials whose val score lags at the same epoch
    seed: int = 0  # the sampler's seed (a worker joining a running study mixes in its host and pid)
    heartbeat: int = Field(60, ge=1)  # seconds; a worker silent for 2x this is taken for dead and its trial is run again


class Config(_Section):
    metric: str = "accuracy"  # accuracy | balanced_accuracy | macro_f1 | log_loss | roc_auc | qwk | map@3 (map@K)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    sched: SchedConfig = SchedConfig()
    train: TrainConfig = TrainConfig()
    aug: AugConfig = AugConfig()
    tta: TTAConfig = TTAConfig()
    tune: TuneConfig = TuneConfig()
    pseudo: PseudoConfig = PseudoConfig()  # second round: the test images with the teachers' predictions (comp train --pseudo)
    distill: DistillConfig = DistillConfig()  # second round: one student learns the teachers (comp distill)
    # experiment trackers that mirror each epoch, the config and the summary (comp.engine.tracking)
    track: list[Literal["tensorboard", "mlflow", "wandb"]] = []

    @field_validator("track", mode="before")
    @classmethod
    def _one_tracker(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, str) else v

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        from comp.tasks import known_metric

        try:
            return known_metric(v)
        except UserError as e:
            raise ValueError(str(e)) from None


def split_seed(cfg: Config) -> int:
    """The seed of the run's hold-out split and folds: `data.split_seed`, else `train.seed`."""
    return cfg.data.split_seed if cfg.data.split_seed is not None else cfg.train.seed


def load_config(path: Union[str, Path], overrides: Optional[list[Union[str, tuple[str, Any]]]] = None) -> Config:
    """Read a YAML config, apply `key=value` overrides and validate.

    Args:
        path: YAML file; sections as in `Config`. Missing keys take their defaults.
        overrides: strings like "optim.lr=3e-4" or "aug.scale=[0.35,1]" (values parsed as YAML), or
            ready (key, value) pairs such as ("data.dir", "/data/comp").

    Returns:
        The validated `Config`.

    Raises:
        UserError: unreadable file, bad YAML, unknown key or wrong type, naming the key and its source.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "config file", "pass a YAML file, e.g. configs/demo.yaml", "sections (data:, model:, ...)")
    overridden = set()
    for item in overrides or []:
        key, value = item if isinstance(item, tuple) else _parse_override(item)
        _set_dotted(raw, key, value)
        overridden.add(key)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(_explain(e, path, overridden)) from e


def read_yaml_mapping(path: Path, what: str, hint: str, expected: str) -> dict[str, Any]:
    """A YAML file holding a mapping; missing file, bad YAML or another type is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path} ({hint})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from e
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from e
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of {expected}, got {type(raw).__name__}")
    return raw


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a plain mapping (e.g. a run's saved config.yaml content) into a `Config`."""
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(_explain(e, Path(source), set())) from e


def save_config(cfg: Config, path: Union[str, Path]) -> None:
    """Write the fully resolved config as YAML (what a run actually used)."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True), sort_keys=False))


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected key=value, e.g. --set optim.lr=3e-4")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {item!r}: bad key; use dotted section keys like train.epochs=5")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    # PyYAML reads "1e-3" as a string (YAML 1.1); pydantic coerces numeric strings, so leave it.
    return key, value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            return  # `data: 5` stays 5, so validation reports it (a section replaced by defaults would hide it)
        node = child
    node[parts[-1]] = value


def _known_keys(loc: tuple) -> list[str]:
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return [f.alias or name for name, f in model.model_fields.items()]  # as the user types them (`from`, not `from_`)


_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_NAMES = {"str", "int", "float", "bool"}


def _explain(err: ValidationError, path: Path, overridden: set[str]) -> str:
    errors = err.errors()
    # A union field reports one error per branch; the validator's own message is the useful one.
    first = min(errors, key=lambda e: {"extra_forbidden": 0, "value_error": 1}.get(e["type"], 2))
    # Union branches also append their type name to loc ("HeadConfig", "str", ...); keep the user's keys.
    loc = tuple(p for p in first["loc"] if isinstance(p, int) or (_KEY.match(p) and p not in _TYPE_NAMES))
    key = ".".join(str(p) for p in loc)
    # The --set that set this key or a section holding it; for an unknown key, also one below it
    # (`--set foo.bar=1` creates the unknown `foo`). A --set inside a bad section is not its source.
    def touched(o: str) -> bool:
        return o == key or key.startswith(o + ".") or (first["type"] == "extra_forbidden" and o.startswith(key + "."))

    setter = next((o for o in sorted(overridden) if touched(o)), None)
    source = f"--set {setter}" if setter else str(path)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 and first["type"] != "value_error" else ""
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        hint = f"did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?" if close else "remove it"
        return f"{source}: unknown key '{key}'; {hint}{more}"
    got = first.get("input")
    return f"{source}: bad value for '{key}': {first['msg']} (got {got!r}){more}"
