import pytest
import torch

from comp.errors import UserError
from comp.tta import center_zoom, parse_view, parse_views, rescale, rotate


@pytest.mark.parametrize(
    "name,shape",
    [("identity", (2, 3, 16, 16)), ("hflip", (2, 3, 16, 16)), ("vflip", (2, 3, 16, 16)), ("rot10", (2, 3, 16, 16)),
     ("rot-10", (2, 3, 16, 16)), ("crop0.9", (2, 3, 16, 16)), ("scale1.25", (2, 3, 20, 20)), ("scale0.5", (2, 3, 8, 8)),
     ("hflip+rot10", (2, 3, 16, 16))],
)
def test_view_shapes(name, shape):
    x = torch.randn(2, 3, 16, 16)
    y = parse_view(name)(x)
    assert y.shape == shape and torch.isfinite(y).all()


def test_views_do_what_they_say():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4).contiguous()
    assert torch.equal(parse_view("hflip")(x), x.flip(3))
    assert torch.equal(parse_view("vflip")(x), x.flip(2))
    assert torch.equal(parse_view("identity")(x), x)
    assert torch.allclose(rotate(x, 0.0), x, atol=1e-5)
    assert torch.allclose(rotate(x, 90.0), torch.rot90(x, 1, (2, 3)), atol=1e-4)
    assert torch.allclose(center_zoom(x, 1.0), x, atol=1e-5)
    big = torch.rand(1, 3, 12, 12)
    assert torch.allclose(rescale(big, 1.0), big, atol=1e-5)


def test_parse_views_normalizes_and_rejects_unknown():
    assert parse_views("identity, HFLIP,hflip,rot10") == ["identity", "hflip", "rot10"]
    for bad in ("flip", "rot", "crop1.5", "scale9", ""):
        with pytest.raises(UserError, match="TTA view"):
            parse_views(bad)
