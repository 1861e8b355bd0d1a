"""Published numbers to print beside ours, with where they come from and how they were measured.

Values are on the scale the papers print (CS ×100; SSMS on SS2A's 0–10 scale). They are anchors,
not targets: a number is only comparable under the same dataset, clip length, tool and backbone
(MMAudio re-measured V2A-Mapper's FD as 8.40 under its 8 s protocol against 24.168 in the paper).
Sources: docs/evaluation.md, and shared/reference/metrics-and-data.md §6 and the papers' tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Published:
    metric: str
    value: float
    method: str
    source: str
    setting: str
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_V2A = "V2A-Mapper paper"
_V2A_SET = "VGGSound test (15,446 clips), 10 s"
_SS2A = "SS2A paper, Tab. 1"
_SS2A_SET = "VGGSound test minus VGG-SS (10,288 clips), 10 s, gudgud96 FAD"
_MMA = "MMAudio paper, Tab. 1"
_MMA_SET = "VGGSound test, 8 s, av-benchmark"
_STO = "Sounding-that-Object paper, Tab. 1"
_STO_SET = "AudioCaps test"

PUBLISHED: tuple[Published, ...] = (
    # V2A-Mapper (AAAI 2024), repo docs/table.png
    Published("fd", 24.168, "V2A-Mapper", _V2A, _V2A_SET),
    Published("fd", 51.500, "Im2Wav", _V2A, _V2A_SET),
    Published("fd", 27.124, "CLIPSonic-IQ", _V2A, _V2A_SET),
    Published("fad", 0.841, "V2A-Mapper", _V2A, _V2A_SET),
    Published("fad", 6.005, "Im2Wav", _V2A, _V2A_SET),
    Published("fad", 3.495, "CLIPSonic-IQ", _V2A, _V2A_SET),
    Published("clip_score", 9.720, "V2A-Mapper", _V2A, _V2A_SET),
    Published("clip_score", 8.925, "Reference (ground-truth audio)", _V2A, _V2A_SET),
    Published("clip_score", 7.827, "Im2Wav", _V2A, _V2A_SET),
    Published("clip_score", 11.950, "V2A-Mapper", _V2A, "ImageHear (101 images)"),
    # SS2A (Gotta Hear Them All), Table 1, transcribed from the paper text
    Published("fad", 1.150, "SS2A", _SS2A, _SS2A_SET),
    Published("fad", 0.946, "V2A-Mapper", _SS2A, _SS2A_SET),
    Published("c_fad", 6.716, "SS2A", _SS2A, _SS2A_SET),
    Published("c_fad", 5.516, "V2A-Mapper", _SS2A, _SS2A_SET),
    Published("clip_score", 12.947, "SS2A", _SS2A, _SS2A_SET),
    Published("clip_score", 11.521, "V2A-Mapper", _SS2A, _SS2A_SET),
    Published("ssms", 3.793, "SS2A", _SS2A, _SS2A_SET, "0-10 scale (F1 x 10, M = N = 10)"),
    Published("ssms", 3.164, "V2A-Mapper", _SS2A, _SS2A_SET, "0-10 scale (F1 x 10, M = N = 10)"),
    # MMAudio (CVPR 2025), Table 1; FD_PANNs / FD_VGG / KL_PANNs (softmax) / IS_PANNs
    Published("fd", 5.22, "MMAudio-S-16k", _MMA, _MMA_SET, "FD_PANNs"),
    Published("fd", 4.72, "MMAudio-L-44k", _MMA, _MMA_SET, "FD_PANNs"),
    Published("fd", 8.40, "V2A-Mapper", _MMA, _MMA_SET, "FD_PANNs, re-measured by MMAudio"),
    Published("fad", 0.79, "MMAudio-S-16k", _MMA, _MMA_SET, "FD_VGG"),
    Published("fad", 0.97, "MMAudio-L-44k", _MMA, _MMA_SET, "FD_VGG"),
    Published("fad", 0.84, "V2A-Mapper", _MMA, _MMA_SET, "FD_VGG, re-measured by MMAudio"),
    Published("kl_softmax", 1.65, "MMAudio-S-16k", _MMA, _MMA_SET, "KL_PANNs"),
    Published("kl_softmax", 2.69, "V2A-Mapper", _MMA, _MMA_SET, "KL_PANNs, re-measured by MMAudio"),
    Published("is", 14.44, "MMAudio-S-16k", _MMA, _MMA_SET, "IS_PANNs"),
    Published("is", 17.40, "MMAudio-L-44k", _MMA, _MMA_SET, "IS_PANNs"),
    Published("is", 12.47, "V2A-Mapper", _MMA, _MMA_SET, "IS_PANNs, re-measured by MMAudio"),
    # Sounding that Object (ICML 2025), Table 1; the FAD backbone and KL variant are not stated
    Published("acc", 0.859, "Sounding-that-Object", _STO, _STO_SET, "exact ACC recipe unpublished"),
    Published("acc", 0.806, "SSV2A", _STO, _STO_SET, "exact ACC recipe unpublished"),
    Published("fad", 1.271, "Sounding-that-Object", _STO, _STO_SET, "backbone not stated"),
    Published("kl_softmax", 0.517, "Sounding-that-Object", _STO, _STO_SET, "KL variant not stated"),
    Published("is", 2.102, "Sounding-that-Object", _STO, _STO_SET),
)

#: The column each source gets in report.md: its own method's number (the rest are in report.json).
HEADLINE: dict[str, str] = {
    _V2A: "V2A-Mapper",
    _SS2A: "SS2A",
    _MMA: "MMAudio-S-16k",
    _STO: "Sounding-that-Object",
}


def published_for(metrics: list[str]) -> list[Published]:
    """The published numbers of the given metrics, in table order."""
    return [p for p in PUBLISHED if p.metric in metrics]
