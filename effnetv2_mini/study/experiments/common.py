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
