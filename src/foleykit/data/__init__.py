"""Dataset manifests: what a training or extraction run iterates over."""

from .manifests import (
    Manifest,
    ManifestItem,
    read_audiocaps_csv,
    read_generic_csv,
    read_manifest,
    read_manifest_jsonl,
    read_vggsound_csv,
    read_vggss_json,
)

__all__ = [
    "Manifest",
    "ManifestItem",
    "read_audiocaps_csv",
    "read_generic_csv",
    "read_manifest",
    "read_manifest_jsonl",
    "read_vggsound_csv",
    "read_vggss_json",
]
