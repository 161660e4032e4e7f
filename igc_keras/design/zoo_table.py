"""The model zoo table (``igc-keras models``): each registered network
built and counted now, beside the papers' figures."""


def fmt(value, scale, digits=3):
    return "-" if value is None else f"{value / scale:.{digits}f}"


def zoo_rows(pattern="*"):
    """One dict per registered model matching ``pattern``, measured now.

    ``params`` follows the paper row's counting convention; ``mult_adds`` is
    the standard count, and ``mult_adds_paper_convention`` the count under the
    row's convention where it differs (IGCV2 ImageNet).
    """
    from igc_keras.design import count_mult_adds, count_params
    from igc_keras.registry import get_model_spec, list_models

    for name in list_models(pattern):
        spec = get_model_spec(name)
        model = spec.build()
        row = {"spec": spec, "mult_adds": count_mult_adds(model),
               "mult_adds_paper_convention": None}
        if spec.paper:
            row["params"], madds = spec.paper.count(model)
            if spec.paper.spatial_twice:
                row["mult_adds_paper_convention"] = madds
        else:
            row["params"] = count_params(model)
        yield row


def convention(paper):
    if paper is None:
        return "CFB"
    return "C" + ("F" if paper.classifier else "") + (
        "B" if paper.batchnorm else "")


def note(row):
    spec = row["spec"]
    note = ("RECONSTRUCTED: " + spec.reconstructed) if spec.reconstructed \
        else spec.description
    if row["mult_adds_paper_convention"] is not None:
        note = (f"[MAdds with 3x3 convs counted twice: "
                f"{row['mult_adds_paper_convention'] / 1e6:.1f}M] " + note)
    return note
