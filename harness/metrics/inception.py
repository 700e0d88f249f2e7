"""The FID Inception-v3: torchvision's Inception3 with the block variants of the TF graph that
FID was defined on (as in pytorch-fid's ``fid_inception_v3``), 1008 logits, 2048-d pool3 output.

The TF graph differs from torchvision's Inception3 in four places: average pools in the A, C and
first E blocks exclude padding from the mean (``count_include_pad=False``), and the last E block
pools its branch with a max instead of an average. State dict keys are torchvision's, so the
``pt_inception-2015-12-05-6726825d.pth`` file that pytorch-fid and torch-fidelity download loads
with ``strict=True``. Inputs are RGB scaled to [-1, 1] at 299 x 299.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE


class FIDInceptionA(InceptionA):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return [b1, b5, b3, bp]


class FIDInceptionC(InceptionC):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(bd))))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return [b1, b7, bd, bp]


class _FIDInceptionE(InceptionE):
    max_pool: bool = False

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:
            # The TF graph's last block (mixed_10) max-pools here: a bug in the original model
            # that FID keeps for comparability.
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [b1, b3, bd, self.branch_pool(pooled)]


class FIDInceptionE_1(_FIDInceptionE):  # noqa: N801 - pytorch-fid's name
    max_pool = False


class FIDInceptionE_2(_FIDInceptionE):  # noqa: N801 - pytorch-fid's name
    max_pool = True


class FIDInceptionV3(Inception3):
    """Inception3 whose forward returns the 2048-d pool3 features of a [-1, 1] NCHW batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.flatten(self.avgpool(self.trunk(x)), 1)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x)))
        x = self.maxpool2(x)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The 1008 TF logits (index 0 is background), for checks of loaded weights."""
        return self.fc(self.forward(x))


def fid_inception_v3() -> FIDInceptionV3:
    """The architecture with uninitialised weights (load the FID state dict into it)."""
    model = FIDInceptionV3(num_classes=1008, aux_logits=False, init_weights=False)
    model.Mixed_5b = FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = FIDInceptionE_1(1280)
    model.Mixed_7c = FIDInceptionE_2(2048)
    return model
