# Pre-training (rules/pretrain.smk): its input functions, output lists and params
# helpers, included at the top of rules/pretrain.smk.


# [INITIAL_STEP] for the untrained model's rules; empty (they match nothing) without a CNN track
INITIAL_STEPS = [step for step in steps(CNN, "pretrain") if step == INITIAL_STEP]


def trained_steps(track):
    """The checkpoints a source's own run writes: all but step 0, the untrained model of
    (seed, classes) that every source with that many classes shares (tconfig.INITIAL_MODEL).
    """
    return [step for step in steps(track, "pretrain") if step != INITIAL_STEP]


def checkpoint_path(track, source, seed, step):
    return tconfig.checkpoint_path(config, track, source, seed, step)


def checkpoint_outputs(model, track_steps):
    """The checkpoints of a run folder pattern ``model``, one per step of ``track_steps``."""
    return [
        f"results/{{track}}/checkpoints/{model}/seed{{seed}}/step{step}.pt"
        for step in track_steps
    ]


def initial_file(stage):
    """Input function: the untrained model's file of a source's run, for stage ``checkpoints``
    (its checkpoint), ``metrics`` or ``finetune`` (its table on the job's target)."""

    def path(wildcards):
        track, source, seed = wildcards.track, wildcards.source, wildcards.seed
        if stage == "checkpoints":
            return checkpoint_path(track, source, seed, INITIAL_STEP)
        folder = tconfig.run_folder(config, track, source, INITIAL_STEP)
        return f"results/{track}/{stage}/{wildcards.target}/{folder}/seed{seed}/step{INITIAL_STEP}.csv"

    return path


def source_dataset(wildcards):
    return dataset_file(
        tconfig.source(config, wildcards.track, wildcards.source)["dataset"]
    )
