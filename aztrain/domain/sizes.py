"""VM sizes: what each size aztrain knows brings (GPUs, vCPUs, quota family), and the sizes Azure has retired."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class SizeFacts:
    """What a VM size brings: GPUs and vCPUs per node, and the quota family its vCPUs count against."""

    gpus: int
    vcpus: int
    family: str


#: The VM sizes aztrain knows, from Azure's size pages (GPUs: "Accelerators" tab; vCPUs: "Host specs"):
#: learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/{ncast4v3,nca100v4,ncadsh100v5,
#: ndma100v4,ndh100v5}-series, and general-purpose/dsv2-series for the CPU size. Families are the
#: quota names `az vm list-usage` and the portal's Quotas page use (`standardNCASv3_T4Family`, ...).
#: Fractional-GPU sizes (NVadsA10 v5) are left out: a training process needs a whole GPU.
SIZES: dict[str, SizeFacts] = {
    "Standard_NC4as_T4_v3": SizeFacts(1, 4, "standardNCASv3_T4Family"),
    "Standard_NC8as_T4_v3": SizeFacts(1, 8, "standardNCASv3_T4Family"),
    "Standard_NC16as_T4_v3": SizeFacts(1, 16, "standardNCASv3_T4Family"),
    "Standard_NC64as_T4_v3": SizeFacts(4, 64, "standardNCASv3_T4Family"),
    "Standard_NC24ads_A100_v4": SizeFacts(1, 24, "standardNCADSA100v4Family"),
    "Standard_NC48ads_A100_v4": SizeFacts(2, 48, "standardNCADSA100v4Family"),
    "Standard_NC96ads_A100_v4": SizeFacts(4, 96, "standardNCADSA100v4Family"),
    "Standard_NC40ads_H100_v5": SizeFacts(1, 40, "standardNCadsH100v5Family"),
    "Standard_NC80adis_H100_v5": SizeFacts(2, 80, "standardNCadsH100v5Family"),
    "Standard_ND96amsr_A100_v4": SizeFacts(8, 96, "standardNDAMSv4_A100Family"),
    "Standard_ND96isr_H100_v5": SizeFacts(8, 96, "standardNDSH100v5Family"),
    "Standard_DS3_v2": SizeFacts(0, 4, "standardDSv2Family"),
}
GPUS_PER_NODE: dict[str, int] = {size: facts.gpus for size, facts in SIZES.items()}


@dataclass(frozen=True)
class Retirement:
    """A VM series Azure has retired: its sizes are deallocated and can no longer be allocated."""

    series: str
    sizes: str  # a regular expression matching the series' size names whole
    retired_on: date
    replacement: str


#: Azure's retirement notices (learn.microsoft.com/azure/virtual-machines/...):
#: sizes/migration-guides/{nc,ncv2,nd,nv}-series-retirement (6 Sep 2023) and
#: ncv3-nc6s-nc12s-nc24s-retirement (30 Sep 2025).
RETIRED: tuple[Retirement, ...] = (
    Retirement("NCv3", r"Standard_NC(6|12|24|24r)s_v3", date(2025, 9, 30),
               "Standard_NC4as_T4_v3 (1 x T4) or Standard_NC24ads_A100_v4 (1 x A100)"),
    Retirement("NCv2", r"Standard_NC(6|12|24|24r)s_v2", date(2023, 9, 6),
               "Standard_NC4as_T4_v3 (1 x T4) or Standard_NC24ads_A100_v4 (1 x A100)"),
    Retirement("NC", r"Standard_NC(6|12|24|24r)(_Promo)?", date(2023, 9, 6), "Standard_NC4as_T4_v3 (1 x T4)"),
    Retirement("ND", r"Standard_ND(6|12|24|24r)s", date(2023, 9, 6), "Standard_NC24ads_A100_v4 (1 x A100)"),
    Retirement("NV", r"Standard_NV(6|12|24)(_Promo)?", date(2023, 9, 6), "Standard_NC4as_T4_v3 (1 x T4)"),
)  # fmt: skip


def retirement_notice(vm_size: str) -> str:
    """Why `vm_size` cannot be used and what to use instead, or '' when Azure has not retired it."""
    for retired in RETIRED:
        if re.fullmatch(retired.sizes, vm_size, flags=re.IGNORECASE):
            return (
                f"{vm_size} ({retired.series} series) was retired by Azure on {retired.retired_on:%d %b %Y}; "
                f"use {retired.replacement} instead"
            )
    return ""
