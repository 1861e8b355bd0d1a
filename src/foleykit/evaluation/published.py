"""Published numbers to print beside ours, with where they come from, how they were measured and how sure we are.

Values are on the scale the papers print (CS ×100; SSMS on SS2A's 0–10 scale). They are anchors,
not targets: a number is only comparable under the same dataset, clip length, tool and backbone
(MMAudio re-measured V2A-Mapper's FD as 8.40 under its 8 s protocol against 24.168 in the paper).

Every entry carries a ``provenance``:

* ``paper``: the value was read in the paper's own text (``shared/papers/``, file and table in
  ``checked_in``), and the paper states which metric it is;
* ``secondary``: the value is in ``shared/reference/metrics-and-data.md`` as ``[T]`` (several
  third-party copies of the paper's table agree), but the paper itself was not at hand to check;
* ``unverified``: the value or what it measures is not confirmed by either (for example a column
  whose backbone or variant the sources do not state). Reports mark these numbers.

``dataset`` names the benchmark protocol (:mod:`.protocols`) the number belongs to, so a report for
one benchmark only shows that benchmark's numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Provenance = Literal["paper", "secondary", "unverified"]
PROVENANCE_LEVELS: tuple[str, ...] = ("paper", "secondary", "unverified")
#: How report.md marks a number that was not read in the paper itself.
PROVENANCE_MARKS: dict[str, str] = {"paper": "", "secondary": "†", "unverified": "(unverified)"}
PROVENANCE_LEGEND: dict[str, str] = {
    "secondary": "† from third-party copies of the paper's table (metrics-and-data.md [T]); not checked against the paper",
    "unverified": "(unverified): the value, or which metric/variant it is, is not confirmed by the paper or our reference",
}


@dataclass(frozen=True)
class Published:
    metric: str
    value: float
    method: str
    source: str
    setting: str
    note: str = ""
    dataset: str = ""
    provenance: str = "unverified"
    checked_in: str = ""

    def __post_init__(self) -> None:
        if self.provenance not in PROVENANCE_LEVELS:
            raise ValueError(f"provenance {self.provenance!r} is not one of {PROVENANCE_LEVELS}")

    @property
    def verified(self) -> bool:
        return self.provenance == "paper"

    @property
    def mark(self) -> str:
        return PROVENANCE_MARKS[self.provenance]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_REF = "shared/reference/metrics-and-data.md"

_V2A = "V2A-Mapper paper"
_V2A_SET = "VGGSound test (15,446 clips), 10 s; FD = PANNs, FAD = VGGish"
_V2A_IH = "ImageHear (101 images), 10 s"
_V2A_AT = "shared/papers/v2a-mapper.txt, Table 1"

_SS2A = "SS2A paper, Tab. 1"
_SS2A_SET = "VGGSound test minus VGG-SS (10,288 clips), 10 s, gudgud96 FAD"
_SS2A_AT = "shared/papers/ss2a-gotta-hear-them-all.txt, Table 1"
_SS2A_T2 = "SS2A paper, Tab. 2"
_SS2A_T2_AT = "shared/papers/ss2a-gotta-hear-them-all.txt, Table 2"
_SS2A_SINGLE = "VGG-SS single-source (455 held-out pairs of SS2A's random split), 10 s, gudgud96 FAD"
_SS2A_MULTI = "VGG-SS multi-source (38 held-out pairs of SS2A's random split), 10 s, gudgud96 FAD"
_SS2A_IH = "ImageHear (101 images), 10 s"
_SSMS_NOTE = "0-10 scale (F1 x 10, M = N = 10)"

_MMA = "MMAudio paper, Tab. 1"
_MMA_SET = "VGGSound test (MMAudio's 15,221-clip list), 8 s, av-benchmark"
_MMA_AT = f"{_REF} §0.6, §6.1, §6.3 [T]"
_MMA_IS = "IS: whether the column is IS_PANNs or IS_PaSST is not stated in our sources"

_STO = "Sounding-that-Object paper, Tab. 1"
_STO_SET = "AudioCaps (the paper's test set), AudioLDM-Eval paired mode"
_STO_AT = "shared/papers/sounding-that-object.txt, Table 1 (Appendix C for the tools)"


def _v2a(metric: str, value: float, method: str, imagehear: bool = False) -> Published:
    setting, dataset = (_V2A_IH, "imagehear") if imagehear else (_V2A_SET, "vggsound-test")
    return Published(metric, value, method, _V2A, setting, dataset=dataset, provenance="paper", checked_in=_V2A_AT)


def _ss2a(metric: str, value: float, method: str) -> Published:
    note = _SSMS_NOTE if metric == "ssms" else ""
    return Published(metric, value, method, _SS2A, _SS2A_SET, note, "vggsound-i2a", "paper", _SS2A_AT)


def _ss2a_t2(metric: str, value: float, method: str, dataset: str) -> Published:
    setting = {"vggss-single": _SS2A_SINGLE, "vggss-multi": _SS2A_MULTI, "imagehear": _SS2A_IH}[dataset]
    note = _SSMS_NOTE if metric == "ssms" else ""
    return Published(metric, value, method, _SS2A_T2, setting, note, dataset, "paper", _SS2A_T2_AT)


def _mma(metric: str, value: float, method: str, note: str, provenance: Provenance = "secondary") -> Published:
    return Published(metric, value, method, _MMA, _MMA_SET, note, "vggsound-test-mmaudio", provenance, _MMA_AT)


def _sto(metric: str, value: float, method: str, note: str, provenance: Provenance = "paper") -> Published:
    return Published(metric, value, method, _STO, _STO_SET, note, "audiocaps-test", provenance, _STO_AT)


_STO_ACC = "PANNs softmax at AudioSet labels; exact exclusion list not given"
_STO_FAD = "AudioLDM-Eval FAD (VGGish)"
_STO_KL = "KL variant not stated: AudioLDM-Eval computes softmax and sigmoid KL"

PUBLISHED: tuple[Published, ...] = (
    # V2A-Mapper (AAAI 2024), Table 1 (also the repo's docs/table.png)
    _v2a("fd", 24.168, "V2A-Mapper"),
    _v2a("fd", 51.500, "Im2Wav"),
    _v2a("fd", 27.124, "CLIPSonic-IQ"),
    _v2a("fad", 0.841, "V2A-Mapper"),
    _v2a("fad", 6.005, "Im2Wav"),
    _v2a("fad", 3.495, "CLIPSonic-IQ"),
    _v2a("clip_score", 9.720, "V2A-Mapper"),
    _v2a("clip_score", 8.925, "Reference (ground-truth audio)"),
    _v2a("clip_score", 7.827, "Im2Wav"),
    _v2a("clip_score", 11.950, "V2A-Mapper", imagehear=True),
    _v2a("clip_score", 9.843, "Im2Wav", imagehear=True),
    # SS2A (Gotta Hear Them All), Table 1: general image-to-audio on VGGSound
    _ss2a("fad", 1.150, "SS2A"),
    _ss2a("fad", 0.946, "V2A-Mapper"),
    _ss2a("c_fad", 6.716, "SS2A"),
    _ss2a("c_fad", 5.516, "V2A-Mapper"),
    _ss2a("clip_score", 12.947, "SS2A"),
    _ss2a("clip_score", 11.521, "V2A-Mapper"),
    _ss2a("ssms", 3.793, "SS2A"),
    _ss2a("ssms", 3.164, "V2A-Mapper"),
    # SS2A, Table 2: source-annotated tests (VGG-SS single / multi source; ImageHear CS only)
    _ss2a_t2("fad", 2.815, "SS2A", "vggss-single"),
    _ss2a_t2("fad", 1.666, "V2A-Mapper", "vggss-single"),
    _ss2a_t2("c_fad", 15.150, "SS2A", "vggss-single"),
    _ss2a_t2("c_fad", 13.583, "V2A-Mapper", "vggss-single"),
    _ss2a_t2("clip_score", 12.215, "SS2A", "vggss-single"),
    _ss2a_t2("clip_score", 11.842, "V2A-Mapper", "vggss-single"),
    _ss2a_t2("clip_score", 13.199, "GroundTruth", "vggss-single"),
    _ss2a_t2("ssms", 4.936, "SS2A", "vggss-single"),
    _ss2a_t2("ssms", 4.488, "V2A-Mapper", "vggss-single"),
    _ss2a_t2("fad", 6.810, "SS2A", "vggss-multi"),
    _ss2a_t2("fad", 10.228, "V2A-Mapper", "vggss-multi"),
    _ss2a_t2("c_fad", 46.933, "SS2A", "vggss-multi"),
    _ss2a_t2("c_fad", 59.660, "V2A-Mapper", "vggss-multi"),
    _ss2a_t2("clip_score", 11.744, "SS2A", "vggss-multi"),
    _ss2a_t2("clip_score", 11.331, "V2A-Mapper", "vggss-multi"),
    _ss2a_t2("clip_score", 12.344, "GroundTruth", "vggss-multi"),
    _ss2a_t2("ssms", 5.973, "SS2A", "vggss-multi"),
    _ss2a_t2("ssms", 4.684, "V2A-Mapper", "vggss-multi"),
    _ss2a_t2("clip_score", 13.930, "SS2A", "imagehear"),
    _ss2a_t2("clip_score", 12.689, "V2A-Mapper", "imagehear"),
    # MMAudio (CVPR 2025), Table 1. The paper is not in shared/papers: values from metrics-and-data.md [T].
    _mma("fd", 5.22, "MMAudio-S-16k", "FD_PANNs"),
    _mma("fd", 4.72, "MMAudio-L-44k", "FD_PANNs"),
    _mma("fd", 8.40, "V2A-Mapper", "FD_PANNs, re-measured by MMAudio"),
    _mma("fad", 0.79, "MMAudio-S-16k", "FD_VGG"),
    _mma("fad", 0.97, "MMAudio-L-44k", "FD_VGG"),
    _mma("fad", 0.84, "V2A-Mapper", "FD_VGG, re-measured by MMAudio"),
    _mma("kl_softmax", 1.65, "MMAudio-S-16k", "KL_PANNs (av-benchmark: softmax)"),
    _mma("kl_softmax", 2.69, "V2A-Mapper", "KL_PANNs, re-measured by MMAudio"),
    _mma("is", 14.44, "MMAudio-S-16k", _MMA_IS, "unverified"),
    _mma("is", 17.40, "MMAudio-L-44k", _MMA_IS, "unverified"),
    _mma("is", 12.47, "V2A-Mapper", _MMA_IS + "; re-measured by MMAudio", "unverified"),
    # Sounding that Object (ICML 2025), Table 1; Appendix C: ACC from PANNs softmax outputs at the
    # annotated AudioSet labels ("Speech", "Music" excluded); FAD / KL / IS from AudioLDM-Eval.
    _sto("acc", 0.859, "Sounding-that-Object", _STO_ACC),
    _sto("acc", 0.806, "SSV2A", _STO_ACC),
    _sto("fad", 1.271, "Sounding-that-Object", _STO_FAD),
    _sto("fad", 1.265, "SSV2A", _STO_FAD),
    _sto("kl_softmax", 0.517, "Sounding-that-Object", _STO_KL, "unverified"),
    _sto("is", 2.102, "Sounding-that-Object", "AudioLDM-Eval IS"),
)

#: The column each source gets in report.md: its own method's number (the rest are in report.json).
HEADLINE: dict[str, str] = {
    _V2A: "V2A-Mapper",
    _SS2A: "SS2A",
    _SS2A_T2: "SS2A",
    _MMA: "MMAudio-S-16k",
    _STO: "Sounding-that-Object",
}


def published_for(metrics: list[str], dataset: str | None = None) -> list[Published]:
    """The published numbers of the given metrics (of one benchmark ``dataset`` if given), in table order."""
    return [p for p in PUBLISHED if p.metric in metrics and (dataset is None or p.dataset == dataset)]
