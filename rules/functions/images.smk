# Image tracks (rules/images.smk): its input functions, output lists and params
# helpers, included at the top of rules/images.smk.


IMAGE_TRACK_RE = (
    "|".join(IMAGE_TRACKS) or "(?!x)x"
)  # a regex matching nothing when none


def image_source_cfg(track, source):
    return track_cfg(track)["sources"][source]


def image_target_cfg(track, target):
    return track_cfg(track)["targets"][target]


def has_head(track, source):
    """Whether a source keeps its classifier head (an encoder has no logits)."""
    cfg = image_source_cfg(track, source)
    return not cfg.get("encoder") and cfg["arch"] != "vgg16_features"


def image_layers(track, source):
    """A source's recorded layers: its own list, else the track's; an encoder records no
    fully-connected VGG layers."""
    cfg = image_source_cfg(track, source)
    layers = list(cfg.get("layers") or track_cfg(track)["layers"])
    if not has_head(track, source):
        layers = [
            layer for layer in layers if layer not in ("fc6", "fc7", "fc8", "logits")
        ]
    return layers


def _extract_rules():
    """Extraction rules, one for each (track, layer list, head or not) — outputs cannot depend
    on the source, so the sources that record the same files share one."""
    groups = {}
    for track in IMAGE_TRACKS:
        for source in track_cfg(track)["sources"]:
            key = (track, tuple(image_layers(track, source)), has_head(track, source))
            groups.setdefault(key, []).append(source)
    rules, names = [], set()
    for (track, layers, head), sources in groups.items():
        name = base = f"{track}_extract" + ("" if head else "_encoder")
        k = 1
        while name in names:  # sources with their own layer lists
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        rules.append((name, track, list(layers), head, "|".join(sorted(sources))))
    return rules


EXTRACT_RULES = _extract_rules()


for _missing in tconfig.missing_image_inputs(config):
    print(
        f"transferability: missing, provide it before running: {_missing}",
        file=sys.stderr,
    )


def image_pretrain_dataset(wildcards):
    """The dataset a source declared with pretrain_on is trained on."""
    cfg = image_source_cfg(wildcards.track, wildcards.source)
    return dataset_file(cfg["pretrain_on"])


def image_folder_dataset(wildcards):
    """The known dataset an image-folder target is built from (make_from)."""
    cfg = image_target_cfg(wildcards.track, wildcards.target)
    return dataset_file(cfg["make_from"])


def image_target_inputs(wildcards):
    """The image folder, when the workflow builds it; external folders are read in place."""
    cfg = image_target_cfg(wildcards.track, wildcards.target)
    return [cfg["root"]] if cfg.get("make_from") else []


def image_weight_inputs(wildcards):
    """The weight file as input where it is a file (so a new file re-runs the source); a
    missing external file is left to the job, which names it (see missing_image_inputs).
    """
    weights = tconfig.image_weights(config, wildcards.track, wildcards.source)
    if image_source_cfg(wildcards.track, wildcards.source).get("pretrain_on"):
        # what training recorded (source accuracy, samples seen) for the baselines
        return {"weights": weights, "info": str(Path(weights).with_suffix(".json"))}
    return {"weights": weights} if Path(weights).is_file() else {}


def image_extract_images(track):
    """Input function of a track's extraction rule: its target's image folder, if built here."""
    return lambda wildcards: image_target_inputs(
        Namespace(track=track, target=wildcards.target)
    )


def image_extract_outputs(track, layers, head):
    """An extraction rule's outputs: the logits (a source that keeps its head), every layer."""
    folder = f"results/{track}/activations/{{target}}/{{source}}/seed{{seed}}/stepfinal"
    outputs = {"logits": f"{folder}/logits.h5"} if head else {}
    outputs["activations"] = [f"{folder}/{layer}.h5" for layer in layers]
    return outputs


def image_extract_transforms(track):
    """Params function of a track's extraction rule: the source's input transforms."""
    return lambda wildcards: tconfig.image_transforms(config, track, wildcards.source)


def image_model_activations(track, target, source, seed):
    folder = f"results/{track}/activations/{target}/{source}/seed{seed}/stepfinal"
    files = [f"{folder}/{layer}.h5" for layer in image_layers(track, source)]
    if has_head(track, source):
        files.append(f"{folder}/logits.h5")
    return files


def image_activation_inputs(wildcards):
    w = wildcards
    folder = f"results/{w.track}/activations/{w.target}/{w.source}/seed{w.seed}"
    return [
        f"{folder}/stepfinal/{layer}.h5" for layer in image_layers(w.track, w.source)
    ]


def image_logits_inputs(wildcards):
    w = wildcards
    files = image_model_activations(w.track, w.target, w.source, w.seed)
    return [f for f in files if Path(f).name == "logits.h5"]


def image_finetune_checkpoint(wildcards):
    if wildcards.source == "scratch":
        return []
    return f"results/{wildcards.track}/checkpoints/{wildcards.source}/seed{wildcards.seed}/final.pt"


def image_model_files(track, pattern, with_scratch=False):
    cfg = track_cfg(track)
    sources = list(cfg["sources"]) + (
        ["scratch"] if with_scratch and cfg.get("scratch") else []
    )
    return [
        pattern.format(track=track, target=target, source=source, seed=seed)
        for target in cfg["targets"]
        for source in sources
        for seed in tconfig.image_seeds(config, track, source)
    ]
