# Extraction (rules/extract.smk): its input functions, output lists and params
# helpers, included at the top of rules/extract.smk.


def run_checkpoints(wildcards):
    return [
        checkpoint_path(wildcards.track, wildcards.source, wildcards.seed, step)
        for step in trained_steps(wildcards.track)
    ]


def activation_outputs(model, track_steps):
    """Extraction outputs (every layer but the logits) of a run folder pattern ``model``,
    temporary where the config says so; ``track_steps`` is empty without a CNN track."""
    files = [
        f"results/{{track}}/activations/{{target}}/{model}/seed{{seed}}/step{step}/{layer}.h5"
        for step in track_steps
        for layer in track_cfg(CNN)["layers"]
    ]
    return [temp(path) for path in files] if config["temp_activations"] else files


def logits_outputs(model, track_steps):
    return [
        f"results/{{track}}/activations/{{target}}/{model}/seed{{seed}}/step{step}/logits.h5"
        for step in track_steps
    ]


def activation_dir(track, target, source, seed, step):
    folder = tconfig.run_folder(config, track, source, step)
    return f"results/{track}/activations/{target}/{folder}/seed{seed}/step{step}"


def activation_files(track):
    """Activation files are final targets (unless temporary), so a deleted one is recomputed."""
    if config["temp_activations"]:
        return []
    if track in IMAGE_TRACKS:
        return [
            f for target in track_cfg(track)["targets"] for source, seed in models(track)
            for f in image_model_activations(track, target, source, seed)
        ]  # fmt: skip
    files = [
        f"{activation_dir(track, target, source, seed, step)}/{layer}.h5"
        for target in track_cfg(track)["targets"]
        for source, seed in models(track)
        for step in steps(track, "pretrain")
        for layer in track_cfg(track)["layers"] + ["logits"]
    ]
    return list(dict.fromkeys(files))  # sources share their untrained model's files
