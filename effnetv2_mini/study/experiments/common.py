"""What every experiment's trainings share: the data fields of a
:class:`~effnetv2_mini.engine.config.TrainConfig` from a notebook's settings (the built-in set's
options, a photo subset, the decoded-image cache, rehearsal step caps)."""

from __future__ import annotations

from ...data.datasets import is_built_in
from ...engine.devices import pick_device

__all__ = ["data_fields"]


def data_fields(settings, dataset: str, subset: bool = True) -> dict:
    """TrainConfig fields for ``dataset`` (the data set actually used, after any fallback) from
    ``settings``. ``subset=False`` leaves out ``images_per_class`` (e.g. a
    pretraining that uses every image)."""
    fields = dict(dataset=dataset, data_root=settings.data_root,
                  device=str(pick_device(settings.device)), workers=settings.workers,
                  max_steps_per_epoch=settings.max_steps_per_epoch)
    if is_built_in(dataset):
        fields["synthetic"] = {k: v for k, v in (("num_samples", settings.train_samples),
                                                 ("num_classes", settings.num_classes))
                               if v is not None}
    else:
        fields.update(cache=settings.cache or None, imagenette_size=settings.imagenette_size,
                      images_per_class=settings.images_per_class if subset else None)
    return fields


def schedule_facts(recorded: dict) -> dict:
    """A finished run's optimizer steps, peak learning rate and lr decay, from its ``config.json``:
    the numbers the conditions record beside the global batch (docs/paper.md, the plans' table)."""
    config = recorded["config"]
    # one step per accumulated group of batches (a shorter last group too)
    per_epoch = -(-recorded["steps_per_epoch"] // config.get("accumulate", 1))
    return {"optimizer_steps": config["epochs"] * per_epoch, "lr": recorded["peak_lr"],
            "lr_schedule": config["schedule"]}


# The official code trains these with V1's AutoAugment policy (effnetv2_configs.py:134 and :204-210,
# augname 'effnetv1_autoaug'), which this project does not implement (docs/paper.md)
_AUTOAUGMENT_MODELS = (tuple(f"efficientnetv2_b{i}" for i in range(4))
                       + tuple(f"efficientnet_b{i}" for i in range(8)))


def known_differences(config, schedule=None) -> list[str]:
    """The differences from the official setting that a run's own settings show (docs/paper.md,
    "Differences from the official code that remain"); any of them makes a result not the paper's
    (:func:`effnetv2_mini.study.claims.comparable`). ``config``: the run's TrainConfig (resolved or
    not); ``schedule``: its progressive schedule."""
    found = []
    regularized = config.randaug_magnitude or config.mixup_alpha or (
        schedule is not None and any(s.randaug_magnitude or s.mixup_alpha for s in schedule.stages))
    official_recipe = config.recipe in ("paper", "code")
    if config.model in _AUTOAUGMENT_MODELS and official_recipe and not regularized:
        found.append(f"{config.model} trained with no augmentation; the official code uses V1's "
                     "AutoAugment")
    return found
