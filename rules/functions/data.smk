# Data (rules/data.smk): its input functions, output lists and params
# helpers, included at the top of rules/data.smk.


def dataset_file(name):
    return f"{DATA_DIR}/{name}/data.npz"


def dataset_inputs(wildcards):
    """Derived sets are built from MNIST: declare it so only this rule writes it."""
    return [] if wildcards.dataset in BASE_DATASETS else dataset_file("mnist")


def target_dataset(wildcards):
    return dataset_file(
        tconfig.target(config, wildcards.track, wildcards.target)["dataset"]
    )
