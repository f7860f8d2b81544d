# Fine-tuning (rules/finetune.smk): its input functions, output lists and params
# helpers, included at the top of rules/finetune.smk.


def finetune_curves(model, track_steps):
    """The fine-tuning curves of a run folder pattern ``model``, one per step of ``track_steps``."""
    return [
        f"results/{{track}}/finetune/{{target}}/{model}/seed{{seed}}/step{step}.csv"
        for step in track_steps
    ]
