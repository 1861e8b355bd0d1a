"""``foleykit generate``: the sound of one image or video, by any of the three methods."""

# No ``from __future__ import annotations``: typer reads the annotations at runtime.
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import (
    Candidates,
    Device,
    Dtype,
    Duration,
    Guidance,
    Mapper,
    Models,
    OverwriteOutput,
    Preset,
    Quiet,
    Loudness,
    Steps,
)

commands = typer.Typer()


@commands.command()
def generate(
    input: Annotated[Path, typer.Argument(help="Image (jpg/png/...) or video (mp4/mov/...).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .wav/.flac, or .mp4 (a video: its video with the new sound, cut to the sound's length; an image: a still video).")],
    method: Annotated[Optional[str], typer.Option(help="mapper | objects | sources (default: sources when --audio/--stereo/--image/--mask/--ss2a is given, objects when --click/--box/--text is, else mapper).")] = None,
    models: Models = None,
    mapper: Mapper = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed; omitted or -1 = random (the seed used is printed).")] = None,
    duration: Duration = None,
    steps: Steps = None,
    preset: Preset = "fast",
    guidance: Guidance = None,
    candidates: Candidates = 1,
    frames: Annotated[Optional[int], typer.Option(help="Video frames per 10 s window: mapper averages them (default 16), sources aggregates them (default 64).")] = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    overwrite: OverwriteOutput = False,
    quiet: Quiet = False,
    click: Annotated[Optional[list[str]], typer.Option("--click", help="objects: an object at pixel X,Y (repeatable).")] = None,
    box: Annotated[Optional[list[str]], typer.Option("--box", help="objects/sources: an object in box X0,Y0,X1,Y1 pixels (repeatable; sources: X0,Y0,X1,Y1@WEIGHT).")] = None,
    text: Annotated[Optional[list[str]], typer.Option("--text", help="objects/sources: an object or sound source named by text (repeatable; sources: TEXT@WEIGHT).")] = None,
    stems: Annotated[Optional[Path], typer.Option("--stems", help="objects/sources: folder for one stem per object/source.")] = None,
    context: Annotated[float, typer.Option(help="objects: 0..1 share of the whole scene mixed into the blend.")] = 0.0,
    grounding: Annotated[Optional[str], typer.Option(help="objects: trained grounding module folder.")] = None,
    maps: Annotated[Optional[Path], typer.Option("--maps", help="objects: folder for mask/attention PNG maps.")] = None,
    frame: Annotated[Optional[float], typer.Option(help="objects on a video: the frame (seconds) to select in.")] = None,
    audio: Annotated[Optional[list[Path]], typer.Option("--audio", help="sources: an audio clip as a sound source (repeatable; FILE@WEIGHT).")] = None,
    image: Annotated[Optional[list[Path]], typer.Option("--image", help="sources: another image whose sources join the scene (repeatable).")] = None,
    mask: Annotated[Optional[list[Path]], typer.Option("--mask", help="sources: a region of the image as a mask PNG of its size (repeatable).")] = None,
    stereo: Annotated[bool, typer.Option("--stereo", help="sources: a stereo mix of the stems, each region panned by its position.")] = False,
    text_mode: Annotated[str, typer.Option("--text-mode", help="sources: prior (text -> CLIP image space, paper) | clip (plain CLIP text).")] = "prior",
    ss2a: Annotated[Optional[str], typer.Option(help="sources: SS2A bundle folder (manifold/, remixer/, temporal/) or the released ssv2a.pth.")] = None,
    detect: Annotated[Optional[bool], typer.Option("--detect/--no-detect", help="sources: detect sounding objects (default: unless --box/--mask is given).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="sources: detection score threshold 0..1 (default 0.2).")] = None,
    max_detections: Annotated[Optional[int], typer.Option(help="sources: detected objects kept per image (default 8; each costs a CLIP pass).")] = None,
    detector_size: Annotated[Optional[int], typer.Option(help="sources: OWLv2 input side in px (default: native 960; 640 is ~2.7x cheaper, coarser).")] = None,
    max_sources: Annotated[int, typer.Option(help="sources: Remixer slots M (<= 64; one is the feedback slot).")] = 64,
    cycle_rounds: Annotated[Optional[int], typer.Option(help="sources: Cycle Mix rounds (default 4).")] = None,
    cycle_samples: Annotated[Optional[int], typer.Option(help="sources: Cycle Mix candidates per round (default 16).")] = None,
    criterion: Annotated[str, typer.Option(help="sources: Cycle Mix selection, spread (released) | relevance.")] = "spread",
    loudness: Loudness = None,
    stems_relative: Annotated[bool, typer.Option("--stems-relative", help="objects/sources: level the stems by one common gain (the mix's), keeping their relative levels; default: each stem on its own.")] = False,
    route: Annotated[str, typer.Option(help="objects/sources: auto (the trained or released module when given or in the model set, else training-free) | trained | released (sources: --ss2a ssv2a.pth) | training-free.")] = "auto",
    vocabulary: Annotated[Optional[str], typer.Option(help="training-free route: the bridge's vocabulary, sounds (AudioSet + VGGSound, default) | objects | a text file (one name per line).")] = None,
    bridge_top_k: Annotated[Optional[int], typer.Option(help="training-free route: vocabulary words mixed per source (default 3).")] = None,
    bridge_temperature: Annotated[Optional[float], typer.Option(help="training-free route: softmax temperature over the words' CLIP similarities (default 0.01).")] = None,
    original_audio: Annotated[str, typer.Option("--original-audio", help="video to .mp4: the video's own soundtrack is replaced (default), kept under the new one, or ducked (lowered by --duck-db).")] = "replace",
    duck_db: Annotated[Optional[float], typer.Option("--duck-db", help="--original-audio duck: dB the original is lowered by (default 12).")] = None,
    keep_candidates: Annotated[bool, typer.Option("--keep-candidates", help="mapper, --candidates >= 2, one window (<= 10.24 s): also write every candidate (<output>.candidate-NN.wav) with its CLAP score in the sidecar.")] = False,
    negative: Annotated[Optional[str], typer.Option("--negative", help="A negative prompt: guidance steers away from this text (the generator's own CLAP text tower; default: none).")] = None,
) -> None:
    """Generate the sound of an image or a video (objects: --click/--box/--text select what sounds).

    Budget per request: at most 16 sources of all kinds together (--click, --box, --text, --audio,
    --image, --mask), each text at most 300 characters.
    """
    from ..api import generate as api_generate

    if method is None:
        if audio or image or mask or stereo or ss2a:
            method = "sources"
        else:
            method = "objects" if (click or box or text) else "mapper"
    res = api_generate(
        input, output, method=method, models=models, mapper=mapper, seed=seed, duration=duration, steps=steps,
        preset=preset, guidance=guidance, candidates=candidates, frames=frames, device=device, dtype=dtype,
        overwrite=overwrite, progress=not quiet, clicks=click, boxes=box, texts=text, stems=stems,
        context=context, grounding=grounding, maps=maps, frame=frame,
        audios=[str(a) for a in audio or []], images=[str(i) for i in image or []], masks=list(mask or []),
        stereo=stereo, text_mode=text_mode, ss2a=ss2a, detect=detect, threshold=threshold,
        max_detections=max_detections, detector_size=detector_size, max_sources=max_sources,
        cycle_rounds=cycle_rounds, cycle_samples=cycle_samples, criterion=criterion, loudness=loudness,
        stems_relative=stems_relative, route=route, vocabulary=vocabulary, bridge_top_k=bridge_top_k,
        bridge_temperature=bridge_temperature, original_audio=original_audio, duck_db=duck_db, negative=negative,
        keep_candidates=keep_candidates,
    )
    written = {}
    if res.sidecar is not None:  # what the main output really holds (an mp4's track is 48 kHz stereo)
        import json

        written = json.loads(Path(res.sidecar).read_text()).get("output") or {}
    for path in res.outputs:
        fmt = written if written.get("path") and Path(path).resolve() == Path(written["path"]).resolve() else {}
        rate = fmt.get("sample_rate", res.sound.sample_rate)
        channels = {1: ", mono", 2: ", stereo"}.get(fmt.get("channels"), "")
        typer.echo(f"wrote {path} ({fmt.get('duration_s', res.sound.duration_s):.2f} s, {rate} Hz{channels})")
    if res.sidecar is not None:
        typer.echo(f"wrote {res.sidecar}")
    for note in res.sound.record.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    route_rec = res.sound.record.get("route")
    if route_rec:  # objects, sources: which route ran and why (pipelines/training_free.py)
        typer.echo(f"route: {route_rec['name']} ({route_rec['why']})")
        if route_rec["name"] == "training-free":  # not the paper's method: say so where the user looks
            train = "foleykit train grounding" if method == "objects" else "foleykit train manifold/remixer or --ss2a"
            typer.echo(f"warning: no trained {method} module, so the training-free route ran; {train} for the "
                       f"paper's method", err=True)
    typer.echo(f"seed: {res.seed}")
