"""Model registry: golden parameter counts, forward shapes, option-A shortcut, init, weights files."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from workers.engine.errors import ModelError
from workers.engine.models import build_model, get_model_info, init_kaiming, model_names
from workers.engine.models.cifar_resnet import PadShortcut


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet56", 853_018),
        ("mobilenetv2_cifar", 2_237_770),
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        # He et al. 2015, Table 6: 0.27 M, 0.46 M, 0.66 M, 0.85 M, 1.7 M.
        ("resnet20", 269_722),
        ("resnet110", 1_727_962),
    ],
)
def test_golden_parameter_counts(name, params):
    assert n_params(build_model(name)) == params


def test_registry_names_and_unknown_name():
    assert model_names()[:6] == [
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "mobilenetv2_cifar",
    ]
    assert get_model_info("digits_cnn").input_shape == (1, 8, 8)
    with pytest.raises(ModelError, match="'resnet57'"):
        build_model("resnet57")


@pytest.mark.parametrize("name", model_names())
def test_forward_shape_at_the_model_input_size(name):
    info = get_model_info(name)
    model = build_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *info.input_shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_torchvision_models_take_other_input_sizes_and_channels():
    model = build_model("shufflenet_v2_x1_0", num_classes=10, input_shape=(1, 28, 28)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    model = build_model("resnet18", num_classes=10, input_shape=(3, 32, 32)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_input_too_small_is_a_model_error():
    with pytest.raises(ModelError, match="alexnet: input 32x32 is too small"):
        build_model("alexnet", input_shape=(3, 32, 32))
    # The advertised minimum really is enough.
    model = build_model("alexnet", num_classes=3, input_shape=(3, 63, 63)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 63, 63)).shape == (1, 3)
    with pytest.raises(ModelError, match="input_shape"):
        build_model("resnet56", input_shape=(32, 32))


def test_cifar_resnet_layout_and_option_a_shortcut():
    model = build_model("resnet56")
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 9
    block = model.layer2[0]
    assert isinstance(block.shortcut, PadShortcut)
    assert list(block.shortcut.parameters()) == []
    for attr in ("conv1", "bn1", "conv2", "bn2"):
        assert hasattr(block, attr)
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == 64
    # Strided identity: pixel (2i, 2j) of channel c lands at (i, j) of channel c + 8.
    x = torch.randn(1, 16, 32, 32)
    y = block.shortcut(x)
    assert y.shape == (1, 32, 16, 16)
    assert torch.equal(y[0, 8:24], x[0, :, ::2, ::2])
    assert y[0, :8].abs().sum() == 0 and y[0, 24:].abs().sum() == 0


def test_whole_model_pickles_with_torch_save():
    model = build_model("resnet20").eval()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    clone = torch.load(buffer, weights_only=False).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


def test_mobilenetv2_cifar_shortcuts_and_spatial_schedule():
    model = build_model("mobilenetv2_cifar")
    residual = [block.use_residual for block in model.layers]
    # identity only where stride 1 and in == out: 10 of the 17 blocks
    assert sum(residual) == 10
    assert model.layers[0].conv1.kernel_size == (1, 1) and model.layers[0].conv1.out_channels == 32
    feats = []
    model.layers.register_forward_hook(lambda m, i, o: feats.append(o.shape))
    model.eval()(torch.randn(1, 3, 32, 32))
    assert feats[0] == (1, 320, 8, 8)


def test_digits_cnn_is_small_with_prunable_hidden_convs():
    model = build_model("digits_cnn")
    assert n_params(model) < 100_000
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) >= 3 and convs[0].in_channels == 1


def test_init_kaiming_statistics():
    torch.manual_seed(0)
    model = build_model("resnet56")
    for m in model.modules():  # scramble first so the test sees init_kaiming's work
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 3.0)
            nn.init.constant_(m.bias, 2.0)
    init_kaiming(model)
    conv = model.layer3[0].conv2  # 64 filters of 64x3x3: fan_out = 64 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 9)), rel=0.05)
    assert abs(conv.weight.mean().item()) < 0.01
    fc = model.fc
    assert fc.weight.std().item() == pytest.approx(math.sqrt(2.0 / 64), rel=0.2)
    assert torch.all(fc.bias == 0)
    bn = model.layer1[0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_init_kaiming_targets_weight_orig_under_a_prune_mask():
    model = build_model("digits_cnn")
    conv = model.conv2
    prune.l1_unstructured(conv, "weight", amount=0.5)
    before = conv.weight_orig.detach().clone()
    init_kaiming(model)
    assert not torch.equal(before, conv.weight_orig)
    assert conv.weight_orig.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 9)), rel=0.1)
    # The mask survives: half the visible weights stay zero.
    assert (conv.weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_weights_path_round_trip_and_mismatch(tmp_path):
    source = build_model("resnet20")
    path = tmp_path / "r20.pt"
    torch.save(source.state_dict(), path)
    loaded = build_model("resnet20", weights_path=path)
    assert torch.equal(loaded.layer2[1].conv1.weight, source.layer2[1].conv1.weight)

    with pytest.raises(ModelError, match="missing.pt does not exist"):
        build_model("resnet20", weights_path=tmp_path / "missing.pt")
    with pytest.raises(ModelError, match=rf"{path}.*'fc\.weight' has shape \(10, 64\).*\(5, 64\)"):
        build_model("resnet20", num_classes=5, weights_path=path)
    with pytest.raises(ModelError, match=rf"{path}.*missing key 'layer1\.3\.conv1\.weight'"):
        build_model("resnet32", weights_path=path)


def test_digits_cnn_learns_digits_in_a_few_epochs():
    from workers.engine.data import DatasetSpec, load_dataset

    torch.manual_seed(0)
    data = load_dataset(DatasetSpec("digits"))
    model = init_kaiming(build_model("digits_cnn"))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        model.train()
        for x, y in data.train_batches(64, device="cpu", generator=generator):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in data.val_batches(500, device="cpu"):
            correct += (model(x).argmax(1) == y).sum().item()
    assert correct / data.n_val > 0.9  # chance is 0.1; about 0.99 after 3 epochs
