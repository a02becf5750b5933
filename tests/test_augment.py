"""effnetv2_mini.paper.augment against the official TensorFlow code (efficientnetv2/autoaugment.py, preprocessing.py).

Every expected number is a literal worked out by hand from the official expression quoted beside it; none is
recomputed by the code under test.
"""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from effnetv2_mini.paper import augment
from effnetv2_mini.paper.augment import (
    OFFICIAL_MEAN,
    OFFICIAL_STD,
    OPS,
    OfficialEvalResize,
    RandAugment,
    RandomResizedCropRelative,
    crop_box,
    eval_crop_box,
    official_eval_crop,
    op_arguments,
)


def u8(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8)


def smooth_image(seed: int = 0, size: int = 64) -> torch.Tensor:
    """A natural-looking test image: random 8x8 colours upsampled bilinearly."""
    coarse = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 255
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")[0].to(torch.uint8)


# ------------------------------------------------------------------------------------------------------------
# The op table: official level_to_arg, level = magnitude / _MAX_LEVEL (10), before _randomly_negate_tensor
# ------------------------------------------------------------------------------------------------------------

def test_ops_in_official_order():
    # distort_image_with_randaugment's available_ops; no Identity
    assert OPS == ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
                   "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd")


EXPECTED_ARGUMENTS = {  # magnitudes 5, 10, 15, 25
    "AutoContrast": (None, None, None, None),  # lambda level: ()
    "Equalize": (None, None, None, None),
    "Invert": (None, None, None, None),
    "Rotate": (15.0, 30.0, 45.0, 75.0),  # (level / 10) * 30.
    "Posterize": (2, 4, 6, 10),  # int((level / 10) * 4)
    "Solarize": (128, 256, 384, 640),  # int((level / 10) * 256)
    "SolarizeAdd": (55, 110, 165, 275),  # int((level / 10) * 110)
    "Color": (1.0, 1.9, 2.8, 4.6),  # (level / 10) * 1.8 + 0.1
    "Contrast": (1.0, 1.9, 2.8, 4.6),
    "Brightness": (1.0, 1.9, 2.8, 4.6),
    "Sharpness": (1.0, 1.9, 2.8, 4.6),
    "ShearX": (0.15, 0.3, 0.45, 0.75),  # (level / 10) * 0.3
    "ShearY": (0.15, 0.3, 0.45, 0.75),
    "TranslateX": (50.0, 100.0, 150.0, 250.0),  # (level / 10) * float(translate_const=100)
    "TranslateY": (50.0, 100.0, 150.0, 250.0),
    "Cutout": (20, 40, 60, 100),  # int((level / 10) * cutout_const=40)
}


@pytest.mark.parametrize("op_name", sorted(EXPECTED_ARGUMENTS))
def test_op_arguments_match_official_table(op_name):
    assert set(EXPECTED_ARGUMENTS) == set(OPS)
    for magnitude, expected in zip((5, 10, 15, 25), EXPECTED_ARGUMENTS[op_name]):
        argument = op_arguments(op_name, magnitude)
        if expected is None or isinstance(expected, int):
            assert argument == expected and type(argument) is type(expected), (op_name, magnitude, argument)
        else:
            assert argument == pytest.approx(expected, abs=1e-9), (op_name, magnitude, argument)


def test_op_arguments_take_float_magnitudes_and_reject_unknown_ops():
    assert op_arguments("Rotate", 7.5) == pytest.approx(22.5)  # (7.5 / 10) * 30
    assert op_arguments("Posterize", 8.33) == 3  # int(0.833 * 4) = int(3.332)
    with pytest.raises(ValueError, match="unknown op 'Identity'"):
        op_arguments("Identity", 10)


# ------------------------------------------------------------------------------------------------------------
# Each op on small hand-built images
# ------------------------------------------------------------------------------------------------------------

def test_invert_ramp():
    ramp = torch.arange(256).to(torch.uint8).view(1, 1, 256)
    assert torch.equal(augment.invert(ramp), torch.arange(255, -1, -1).to(torch.uint8).view(1, 1, 256))  # 255 - x


def test_solarize_threshold_and_uint8_wrap():
    pixels = u8([0, 127, 128, 255])
    # tf.where(image < threshold, image, 255 - image)
    assert augment.solarize(pixels, 128).tolist() == [0, 127, 127, 0]
    assert augment.solarize(pixels, 200).tolist() == [0, 127, 128, 0]
    # the threshold is a uint8 in TF: 256 (magnitude 10) -> 0 inverts everything, 384 (magnitude 15) -> 128
    assert augment.solarize(pixels, 256).tolist() == [255, 128, 127, 0]
    assert augment.solarize(pixels, 384).tolist() == [0, 127, 127, 0]


def test_solarize_add():
    pixels = u8([0, 100, 127, 128, 200])
    # below 128: clip(x + addition, 0, 255); 128 and above unchanged
    assert augment.solarize_add(pixels, 110).tolist() == [110, 210, 237, 128, 200]
    assert augment.solarize_add(pixels, 165).tolist() == [165, 255, 255, 128, 200]


def test_posterize_keeps_high_bits_as_tf_ran_it():
    pixels = u8([0b10110111, 0b01110111])
    assert augment.posterize(pixels, 4).tolist() == [0b10110000, 0b01110000]  # (x >> 4) << 4
    assert augment.posterize(pixels, 6).tolist() == [0b10110100, 0b01110100]  # magnitude 15: shift 2
    assert augment.posterize(pixels, 8).tolist() == [0b10110111, 0b01110111]  # magnitude 20: shift 0
    # 10 bits (magnitude 25): shift 8 - 10 = -2 becomes uint8 254, clamped to 7 by TF's shift kernels
    assert augment.posterize(pixels, 10).tolist() == [0b10000000, 0]
    assert augment.posterize(pixels, 0).tolist() == [0b10000000, 0]  # shift 8, clamped to 7


def test_brightness():
    image = u8([[[0, 101, 200]]])
    assert augment.brightness(image, 0.0).tolist() == [[[0, 0, 0]]]  # blend(black, image, 0) = black
    assert augment.brightness(image, 1.0).tolist() == [[[0, 101, 200]]]
    assert augment.brightness(image, 0.5).tolist() == [[[0, 50, 100]]]  # 50.5 truncated by tf.cast
    assert augment.brightness(image, 1.9).tolist() == [[[0, 191, 255]]]  # 191.9 -> 191; 380 clipped to 255


def test_color_blends_with_tf_grayscale():
    red = u8([[[255]], [[0]], [[0]]])
    # rgb_to_grayscale: int(0.2989 * 255.5) = 76 for red, int(0.587 * 255.5) = 149 for green, int(0.114 * 255.5) = 29
    assert augment.color(red, 0.0).flatten().tolist() == [76, 76, 76]
    assert augment.color(u8([[[0]], [[255]], [[0]]]), 0.0).flatten().tolist() == [149, 149, 149]
    assert augment.color(u8([[[0]], [[0]], [[255]]]), 0.0).flatten().tolist() == [29, 29, 29]
    # factor 2: 76 + 2 * (255 - 76) = 434 -> 255, 76 + 2 * (0 - 76) = -76 -> 0
    assert augment.color(red, 2.0).flatten().tolist() == [255, 0, 0]


def test_contrast_uses_pixel_count_over_256():
    # official: mean = reduce_sum(histogram) / 256 = H * W / 256, clipped to [0, 255]
    assert augment.contrast(torch.full((3, 16, 16), 100, dtype=torch.uint8), 0.0).unique().tolist() == [1]
    assert augment.contrast(torch.full((3, 224, 224), 100, dtype=torch.uint8), 0.0).unique().tolist() == [196]
    assert augment.contrast(torch.full((3, 300, 300), 100, dtype=torch.uint8), 0.0).unique().tolist() == [255]
    # factor 2 on 16 x 16: 1 + 2 * (100 - 1) = 199
    assert augment.contrast(torch.full((3, 16, 16), 100, dtype=torch.uint8), 2.0).unique().tolist() == [199]


def test_sharpness_smooth_kernel_and_border():
    image = torch.zeros(3, 5, 5, dtype=torch.uint8)
    image[:, 2, 2] = 130
    smoothed = augment.sharpness(image, 0.0)[0]  # factor 0: the SMOOTH-filtered image itself
    assert smoothed[2, 2] == 50  # 130 * 5 / 13
    assert smoothed[1:4, 1:4].sum() == 50 + 8 * 10  # neighbours: 130 * 1 / 13 = 10
    assert smoothed[0].sum() == 0 and smoothed[:, 0].sum() == 0  # border keeps the original zeros
    sharpened = augment.sharpness(image, 2.0)[0]  # degenerate + 2 * (image - degenerate)
    assert sharpened[2, 2] == 210 and sharpened[1, 1] == 0  # 50 + 2 * 80; 10 - 20 clipped to 0
    corner = torch.zeros(1, 5, 5, dtype=torch.uint8)
    corner[0, 0, 0] = 130
    assert augment.sharpness(corner, 0.0)[0, 0, 0] == 130 and augment.sharpness(corner, 0.0)[0, 1, 1] == 10


def test_equalize_two_values():
    image = torch.full((3, 32, 32), 50, dtype=torch.uint8)
    image[:, 16:] = 200
    # 512 pixels of each value: step = (1024 - 512) // 255 = 2; lut[50] = (0 + 1) // 2 = 0, lut[200] = (512 + 1) // 2
    # = 256 clipped to 255
    equalized = augment.equalize(image)
    assert equalized[:, :16].unique().tolist() == [0] and equalized[:, 16:].unique().tolist() == [255]
    small = torch.full((3, 4, 4), 50, dtype=torch.uint8)
    small[:, 2:] = 200
    assert torch.equal(augment.equalize(small), small)  # step = 8 // 255 = 0: unchanged


def test_autocontrast_per_channel():
    image = u8([[[50, 75, 100]], [[10, 20, 15]], [[7, 7, 7]]])
    # scale = 255 / (hi - lo), x * scale - lo * scale, truncated: 75 -> 127.5 -> 127; a flat channel is unchanged
    assert augment.autocontrast(image).tolist() == [[[0, 127, 255]], [[0, 255, 127]], [[7, 7, 7]]]


def test_rotate_90_counterclockwise():
    pattern = u8([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    assert augment.rotate(pattern, 90).tolist() == [[[3, 6, 9], [2, 5, 8], [1, 4, 7]]]
    rotated = augment.rotate(torch.zeros(1, 8, 8, dtype=torch.uint8), 45)
    assert rotated[0, 0, 0] == 128 and rotated[0, 4, 4] == 0  # corners come from outside: filled with 128


def test_translate_moves_marker_and_fills_128():
    image = torch.zeros(1, 5, 8, dtype=torch.uint8)
    image[0, 2, 5] = 255
    # translate_x(pixels=3): output x reads input x + 3, so the marker goes from column 5 to column 2
    moved = augment.translate_x(image, 3)
    assert moved[0, 2, 2] == 255 and int((moved == 255).sum()) == 1
    assert moved[0, :, 5:].unique().tolist() == [128] and moved[0, :, :5].max() == 255
    assert augment.translate_x(image, -2)[0, 2, 7] == 255 and augment.translate_x(image, -2)[0, :, :2].unique().tolist() == [128]
    moved_y = augment.translate_y(image, 2)  # row 2 -> row 0; the last 2 rows filled
    assert moved_y[0, 0, 5] == 255 and moved_y[0, 3:].unique().tolist() == [128]


def test_shear_moves_marker_by_level_times_coordinate():
    image = torch.zeros(1, 8, 8, dtype=torch.uint8)
    image[0, 4, 6] = 255
    # shear_x: transform [1, level, 0, 0, 1, 0, 0, 0]: output (x, y) reads input (x + level * y, y): 6 - 0.5 * 4 = 4
    sheared = augment.shear_x(image, 0.5)
    assert sheared[0, 4, 4] == 255 and int((sheared == 255).sum()) == 1
    assert sheared[0, 0].tolist() == [0] * 8  # row 0 is the origin: unchanged
    assert sheared[0, 4, 6:].tolist() == [128, 128]  # 6 + 2 and 7 + 2 fall outside
    image_y = torch.zeros(1, 8, 8, dtype=torch.uint8)
    image_y[0, 6, 4] = 255
    sheared_y = augment.shear_y(image_y, 0.5)  # output (x, y) reads input (x, y + level * x): 6 - 0.5 * 4 = 4
    assert sheared_y[0, 4, 4] == 255 and int((sheared_y == 255).sum()) == 1


def test_cutout_square_of_side_twice_pad_size():
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    cut = augment.cutout(image, 2, center=(3, 4))  # rows 3-2 .. 3+2-1, columns 4-2 .. 4+2-1
    assert cut[:, 1:5, 2:6].unique().tolist() == [128] and int((cut == 128).sum()) == 3 * 16
    corner = augment.cutout(image, 2, center=(0, 0))  # clipped to rows 0..1, columns 0..1
    assert int((corner == 128).sum()) == 3 * 4 and corner[:, :2, :2].unique().tolist() == [128]
    torch.manual_seed(0)
    drawn = augment.cutout(torch.zeros(3, 64, 64, dtype=torch.uint8), 10)  # magnitude 2.5: int(0.25 * 40) = 10
    rows, cols = torch.nonzero(drawn[0] == 128, as_tuple=True)
    assert 1 <= len(rows) <= 400 and len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


# ------------------------------------------------------------------------------------------------------------
# The RandAugment transform
# ------------------------------------------------------------------------------------------------------------

def test_randaugment_shape_dtype_and_tv_tensor():
    image = smooth_image()
    for seed in range(20):
        torch.manual_seed(seed)
        out = RandAugment(num_ops=2, magnitude=15)(image)
        assert out.dtype == torch.uint8 and out.shape == image.shape
    wrapped = RandAugment(magnitude=10)(tv_tensors.Image(image))
    assert isinstance(wrapped, tv_tensors.Image) and wrapped.shape == image.shape


def test_randaugment_off_at_zero_or_none_and_with_no_ops():
    image = smooth_image()
    for transform in (RandAugment(magnitude=0), RandAugment(magnitude=None), RandAugment(num_ops=0, magnitude=15)):
        assert torch.equal(transform(image), image)


def test_randaugment_reproducible_with_torch_seed():
    image, transform = smooth_image(), RandAugment(num_ops=2, magnitude=12.5)
    outputs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outputs.append(transform(image))
    assert torch.equal(outputs[0], outputs[1])
    assert any(not torch.equal(outputs[0], transform(image)) for _ in range(5))


def test_randaugment_draws_every_op(monkeypatch):
    drawn = []
    real_apply_op = augment.apply_op

    def recording_apply_op(image, op_name, magnitude, reference_size=None):
        drawn.append(op_name)
        return real_apply_op(image, op_name, magnitude, reference_size)

    monkeypatch.setattr(augment, "apply_op", recording_apply_op)
    image, transform = smooth_image(size=32), RandAugment(num_ops=2, magnitude=10)
    torch.manual_seed(0)
    for _ in range(200):
        transform(image)
    assert len(drawn) == 400 and set(drawn) == set(OPS)
    assert max(drawn.count(op) for op in OPS) < 50  # uniform: 25 expected each


def test_randaugment_strong_magnitude_changes_images_more():
    image = smooth_image(size=128)

    def mean_change(magnitude: float) -> float:
        total = 0.0
        for seed in range(64):
            torch.manual_seed(seed)
            total += (RandAugment(2, magnitude)(image).float() - image.float()).abs().mean().item()
        return total / 64

    assert mean_change(15) > mean_change(5) > 0


def test_randaugment_validates_arguments():
    with pytest.raises(ValueError, match=r"magnitude must be None or a finite number >= 0"):
        RandAugment(magnitude=-1)
    with pytest.raises(ValueError, match=r"num_ops must be an integer >= 0"):
        RandAugment(num_ops=-1)
    transform = RandAugment(magnitude=5)
    with pytest.raises(ValueError, match="magnitude"):
        transform.magnitude = float("nan")
    transform.magnitude = 7.5  # progressive learning may change it between stages
    assert "magnitude=7.5" in repr(transform)
    with pytest.raises(TypeError, match="uint8"):
        transform(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        transform(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_official_normalization_constants():
    normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(OFFICIAL_MEAN, OFFICIAL_STD)])
    out = normalize(u8([[[0, 128, 255]]]).expand(3, 1, 3))
    # official: (x - 128) / 128
    assert out[0, 0].tolist() == pytest.approx([-1.0, 0.0, 127 / 128], abs=1e-6)


# ------------------------------------------------------------------------------------------------------------
# The training crop (sample_distorted_bounding_box, relative draws)
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("height, width", [(224, 224), (300, 400)])
def test_crop_box_picks_same_relative_region_at_half_size(height, width):
    for seed in range(300):
        top, left, box_h, box_w = crop_box(height, width, torch.Generator().manual_seed(seed))
        small = crop_box(height // 2, width // 2, torch.Generator().manual_seed(seed))
        large_edges = (top / 2, left / 2, (top + box_h) / 2, (left + box_w) / 2)
        small_edges = (small[0], small[1], small[0] + small[2], small[1] + small[3])
        assert max(abs(a - b) for a, b in zip(large_edges, small_edges)) <= 1, (seed, large_edges, small_edges)


def test_crop_box_area_and_aspect_ranges():
    areas, aspects = [], []
    for seed in range(2000):
        top, left, box_h, box_w = crop_box(1000, 1000, torch.Generator().manual_seed(seed))
        assert 0 <= top and top + box_h <= 1000 and 0 <= left and left + box_w <= 1000
        areas.append(box_h * box_w / 1e6)
        aspects.append(box_w / box_h)
    assert 0.05 - 0.001 <= min(areas) and max(areas) <= 1.0  # area_range=(0.05, 1.0), 1 px rounding
    assert 0.75 - 0.005 <= min(aspects) and max(aspects) <= 1.33 + 0.005  # default aspect_ratio_range (0.75, 1.33)
    assert min(areas) < 0.07 and max(areas) > 0.9  # small and large crops both occur


def test_crop_box_falls_back_to_whole_image():
    # no box of aspect 0.75..1.33 covering >= 5% fits a 1000 x 10 image: TF then returns the whole image
    assert crop_box(1000, 10, torch.Generator().manual_seed(0)) == (0, 0, 1000, 10)


def test_random_resized_crop_relative_transform():
    image = smooth_image(size=96)
    torch.manual_seed(1)
    first = RandomResizedCropRelative(40)(image)
    torch.manual_seed(1)
    second = RandomResizedCropRelative(40)(tv_tensors.Image(image))
    assert first.shape == (3, 40, 40) and first.dtype == torch.uint8
    assert isinstance(second, tv_tensors.Image) and torch.equal(first, second.as_subclass(torch.Tensor))
    flat = torch.full((3, 50, 70), 77, dtype=torch.uint8)
    assert RandomResizedCropRelative(32)(flat).unique().tolist() == [77]
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCropRelative(32, scale=(0.5, 0.1))


# ------------------------------------------------------------------------------------------------------------
# The evaluation crop (preprocess_for_eval) on a 400 x 300 image with a 10% border
# ------------------------------------------------------------------------------------------------------------

BORDER, INNER = 0, 200


def bordered_image() -> torch.Tensor:
    image = torch.full((3, 300, 400), BORDER, dtype=torch.uint8)  # H = 300, W = 400
    image[:, 30:270, 40:360] = INNER  # border: 30 rows, 40 columns on each side
    return image


def runs(line: torch.Tensor) -> list[tuple[str, int, int]]:
    """(kind, first, last) runs of a line of pixels: B border, I inner, M a bilinear mix of both."""
    kinds = ["B" if v == BORDER else "I" if v == INNER else "M" for v in line.tolist()]
    result: list[tuple[str, int, int]] = []
    for index, kind in enumerate(kinds):
        if result and result[-1][0] == kind:
            result[-1] = (kind, result[-1][1], index)
        else:
            result.append((kind, index, index))
    return result


def test_eval_crop_box_official_rule():
    assert eval_crop_box(300, 400, 224) == (19, 69, 262, 262)  # int(300 * 224 / 256) = 262; (300 - 262) // 2 = 19
    assert eval_crop_box(300, 400, 300) == (14, 64, 271, 271)  # int(300 * 300 / 332) = int(271.08) = 271
    assert eval_crop_box(300, 400, 384) == (0, 0, 300, 400)  # size >= 320: no crop
    assert eval_crop_box(300, 400, 480) == (0, 0, 300, 400)


@pytest.mark.parametrize("size, column_runs, row_runs", [
    # crop rows 19..280: 11 border rows at each end -> output rows (i + 0.5) * 262 / 224 - 0.5; columns all inner
    (224, [("B", 0, 8), ("M", 9, 9), ("I", 10, 213), ("M", 214, 214), ("B", 215, 223)], [("I", 0, 223)]),
    # crop rows 14..284: 16 border rows on top, 15 at the bottom; scale 271 / 300
    (300, [("B", 0, 16), ("M", 17, 17), ("I", 18, 282), ("M", 283, 283), ("B", 284, 299)], [("I", 0, 299)]),
    # whole image: rows (i + 0.5) * 300 / 384 - 0.5, columns (j + 0.5) * 400 / 384 - 0.5; the border shows all round
    (384, [("B", 0, 37), ("M", 38, 38), ("I", 39, 344), ("M", 345, 345), ("B", 346, 383)],
     [("B", 0, 37), ("M", 38, 38), ("I", 39, 344), ("M", 345, 345), ("B", 346, 383)]),
    (480, [("B", 0, 46), ("M", 47, 48), ("I", 49, 430), ("M", 431, 432), ("B", 433, 479)],
     [("B", 0, 46), ("M", 47, 48), ("I", 49, 430), ("M", 431, 432), ("B", 433, 479)]),
])
def test_official_eval_crop_keeps_the_official_region(size, column_runs, row_runs):
    out = official_eval_crop(bordered_image(), size)
    assert out.shape == (3, size, size) and out.dtype == torch.uint8
    assert runs(out[0, :, size // 2]) == column_runs
    assert runs(out[0, size // 2, :]) == row_runs
    assert torch.equal(OfficialEvalResize(size)(tv_tensors.Image(bordered_image())).as_subclass(torch.Tensor), out)


def test_reference_size_scales_the_pixel_ops_to_the_image():
    """Ours, labelled: translate 100 px per 10 levels is meant for ImageNet-sized images; with reference_size=224
    a 112 px image is shifted by half the pixels (a marker at x=60 moves to 60 - 25 = 35 at magnitude 5 (50 px))."""
    image = torch.zeros(3, 112, 112, dtype=torch.uint8)
    image[:, 50, 60] = 255
    torch.manual_seed(0)
    shifted = augment.apply_op(image, "TranslateX", 5.0, reference_size=224)
    ys, xs = torch.nonzero(shifted[0] == 255, as_tuple=True)
    assert (ys.tolist(), xs.tolist()) in (([50], [35]), ([50], [85]))  # 25 px, left or right (random sign)
    # Cutout at magnitude 10: half-size 40 px officially, 20 px at 112 / 224: a square of at most 40 x 40 pixels.
    assert 0 < augment.apply_op(image, "Cutout", 10.0, reference_size=224)[0].eq(128).sum() <= 40 * 40
