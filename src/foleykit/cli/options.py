"""Option definitions shared by several ``foleykit`` commands, written once as typer ``Annotated`` aliases.

A command takes one as ``device: Device = "auto"``; the default stays in the command's signature.
An option whose meaning is specific to one command is defined in that command's module.
"""

# No ``from __future__ import annotations``: typer reads these aliases at runtime.
from pathlib import Path
from typing import Annotated, Optional

import typer

# ---- used across verbs --------------------------------------------------------------------------

Models = Annotated[Optional[str], typer.Option(help="Model set: default | tiny | DIR (env FOLEYKIT_MODELS).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | mps")]
Dtype = Annotated[str, typer.Option(
    help="auto | float32 | bfloat16 | float16. auto: bfloat16 on CPUs with native bf16 (avx512_bf16 or AMX), "
         "float32 on other CPUs, float16 on CUDA. The sidecar records the dtype used.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
OverwriteOutput = Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")]
Mapper = Annotated[Optional[str], typer.Option(help="Trained V2A-Mapper folder (foleykit train mapper).")]

# ---- generation settings (generate, batch-generate) ---------------------------------------------

Duration = Annotated[Optional[float], typer.Option(help="Seconds of audio (default: 10 for images, the video's length).")]
Steps = Annotated[Optional[int], typer.Option(help="Diffusion steps (default: from the preset).")]
Preset = Annotated[str, typer.Option(help="paper (DDIM 200, eta 1, guidance 2.5) | fast (DPM-Solver++ 10, diffusion mapper 25).")]
Guidance = Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale (default: preset).")]
Candidates = Annotated[int, typer.Option(help="Clips drawn; the one closest in CLAP to the condition is kept.")]
Loudness = Annotated[Optional[float], typer.Option(
    metavar="LUFS", help="Loudness of the outputs in LUFS (ITU-R BS.1770, e.g. -23 EBU R128, -14 streaming), true "
                         "peak <= -1 dBTP (a sound that cannot reach it stays quieter, with a note); default: each file "
                         "peak-normalised to -1 dBFS.")]

# ---- manifests (extract, curate, batch-generate) ------------------------------------------------

Manifest = Annotated[Path, typer.Argument(help="Manifest: VGGSound/AudioCaps/generic csv, VGG-SS json, or foleykit jsonl.")]
Format = Annotated[str, typer.Option("--format", help="auto | vggsound | vggss | audiocaps | csv | jsonl")]
VideoDir = Annotated[Optional[Path], typer.Option(help="Folder of the videos (<id>.mp4) for VGGSound/VGG-SS/AudioCaps.")]
ImageDir = Annotated[Optional[Path], typer.Option(help="Folder of the frames (<id>.jpg) for VGG-SS.")]
AudioDir = Annotated[Optional[Path], typer.Option(help="Folder of the audio (<id>.wav) for VGGSound/VGG-SS/AudioCaps.")]
Split = Annotated[Optional[str], typer.Option(help="Keep only this split (train/test/...).")]
Restart = Annotated[bool, typer.Option(help="Discard the earlier work in OUTPUT (shards, decisions) and start over.")]

# ---- Ray (extract, batch-generate) --------------------------------------------------------------

Ray = Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (local unless --ray-address).")]
RayAddress = Annotated[Optional[str], typer.Option(help="Ray cluster address (auto, ray://host:10001).")]
Actors = Annotated[Optional[int], typer.Option(help="Ray actors (default: as many as the cluster fits).")]
GpusPerActor = Annotated[float, typer.Option(help="GPUs per Ray actor (0 = CPU actors).")]

# ---- train TASK ---------------------------------------------------------------------------------

TrainData = Annotated[Optional[Path], typer.Argument(
    metavar="DATA", show_default=False,
    help="Training data: an extraction folder or a .safetensors/.pt/.npz of named tensors (or --data).")]
TrainDataOption = Annotated[Optional[Path], typer.Option("--data", help="Training data (default: the run file's data.train).")]
RunDir = Annotated[Optional[Path], typer.Option(
    "-o", "--output",
    help="Run folder: checkpoints/, metrics.jsonl, tensorboard/, final/; when finished it also holds the model's "
         "config.json + model.safetensors, so it loads as the model (default: the run file's).")]
RunFile = Annotated[Optional[str], typer.Option(
    "--config", help="Run file (YAML/JSON) or configs/ name (default: the task's paper settings, e.g. manifold_ss2a).")]
ValData = Annotated[Optional[Path], typer.Option(help="Validation data (default: hold out --val-fraction).")]
ValFraction = Annotated[Optional[float], typer.Option(help="Share held out for validation when no --val-data.")]
Epochs = Annotated[Optional[int], typer.Option(help="Epochs (default: the run file's).")]
BatchSize = Annotated[Optional[int], typer.Option(help="Global batch per optimizer step (split over processes × accumulation).")]
Lr = Annotated[Optional[float], typer.Option(help="AdamW learning rate.")]
GradAccum = Annotated[Optional[int], typer.Option(help="Gradient accumulation steps per optimizer step.")]
MixedPrecision = Annotated[Optional[str], typer.Option(help="no | bf16 | fp16 (loss-scaled).")]
TrainSeed = Annotated[Optional[int], typer.Option(help="Seed of data order, init and noise (default: the run file's, so a rerun resumes; -1 = random, printed).")]
MaxSteps = Annotated[Optional[int], typer.Option(help="Stop (with a checkpoint) after this many optimizer steps.")]
CheckpointEvery = Annotated[Optional[int], typer.Option(help="Also checkpoint every N steps (besides each epoch end).")]
Tensorboard = Annotated[Optional[bool], typer.Option("--tensorboard/--no-tensorboard", help="TensorBoard logs in RUN/tensorboard (default: on when installed).")]
TrainDevice = Annotated[str, typer.Option(help="auto | cpu | cuda | mps (under `accelerate launch`: auto).")]
Settings = Annotated[Optional[list[str]], typer.Option("--set", help="Any run-file setting: key.path=value (repeatable).")]
Resume = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the newest checkpoint in the run folder.")]
OverwriteRun = Annotated[bool, typer.Option(help="Discard a previous run (checkpoints, logs, model) in the run folder and start over.")]
KLWeight = Annotated[Optional[float], typer.Option(help="KL weight (manifold: lambda1; remixer: lambda2).")]
Layers = Annotated[Optional[int], typer.Option(help="Efficient-attention layers.")]
Heads = Annotated[Optional[int], typer.Option(help="Attention heads.")]
