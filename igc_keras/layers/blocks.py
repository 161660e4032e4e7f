"""The IGCV1, IGCV2 and IGCV3 blocks as ``apply_*`` functions (KerasHub style).

Each function takes a channels-last tensor ``x`` of shape ``(batch, H, W, C_in)``
and returns ``(batch, H / strides, W / strides, filters)``. Every layer is named
from ``name`` so weights load by name. Each block checks its design *before*
creating a layer: group counts that do not divide the channels and designs
whose composed kernel would not be dense (breaking the complementary
condition) raise a ``ValueError`` that names the argument and what is allowed.

BatchNorm settings are passed as one dict (``batchnorm=dict(epsilon=...,
momentum=...)``) so each family keeps them in a single place.
"""

import keras

from igc_keras.design.complementary import analyse_design
from igc_keras.layers.checks import check_divisible
from igc_keras.layers.group_conv import GroupConv2D
from igc_keras.layers.permutation import ChannelPermutation

DEFAULT_BATCHNORM = {"epsilon": 1e-5, "momentum": 0.9}


def _channels(x, name):
    channels = x.shape[-1]
    if channels is None:
        raise ValueError(f"{name}: the input's channel axis must be known; got "
                         f"shape {tuple(x.shape)}.")
    return int(channels)


def conv(x, filters, kernel_size, strides=1, groups=1, name=None,
         use_bias=False):
    """Convolution with the authors' symmetric padding.

    Stride 1 uses ``padding="same"`` (symmetric for odd kernels); stride > 1
    pads ``kernel_size // 2`` on every side and uses ``"valid"``, as the
    authors' graphs (``pad=(k//2, k//2)``) do, unlike Keras ``"same"`` which
    pads only bottom/right. ``groups == C_in`` with ``filters == C_in`` gives a
    ``DepthwiseConv2D``; other ``groups > 1`` a :class:`GroupConv2D`.
    """
    cin = _channels(x, name)
    padding = "same" if kernel_size > 1 else "valid"
    if strides > 1 and kernel_size > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    common = dict(strides=strides, padding=padding, use_bias=use_bias,
                  name=name)
    if groups == cin and filters == cin and groups > 1:
        return keras.layers.DepthwiseConv2D(kernel_size, **common)(x)
    if groups > 1:
        return GroupConv2D(filters, kernel_size, groups=groups, **common)(x)
    return keras.layers.Conv2D(filters, kernel_size, **common)(x)


def batchnorm(x, settings, name):
    return keras.layers.BatchNormalization(name=name, **settings)(x)


def activation(x, kind, name):
    if kind is None:
        return x
    if kind == "relu6":
        return keras.layers.ReLU(6.0, name=name)(x)
    return keras.layers.Activation(kind, name=name)(x)


# --------------------------------------------------------------------- IGCV1
def igcv1_paths_per_pair(filters, primary_groups, secondary_groups):
    """Paths joining each input/output pair of an IGCV1 block, or ``None``.

    A secondary branch holds ``K = filters / secondary_groups`` consecutive
    channels of the interleaved primary output; it reaches every primary branch
    iff ``K >= primary_groups``, and then each pair is joined by
    ``K / primary_groups`` paths (1 is the strict complementary condition).
    Returns ``None`` when the composed kernel is not dense or the count is not
    uniform.
    """
    k = filters // secondary_groups
    if k < primary_groups or k % primary_groups:
        return None
    return k // primary_groups


def apply_igcv1_block(x, filters, primary_groups, secondary_groups,
                      kernel_size=3, strides=1, activation_fn="relu",
                      batchnorm_settings=None, name="igcv1_block"):
    """IGCV1 block: ``L`` primary branches, ``M`` secondary branches.

    ``primary (kxk group conv, L groups, stride) -> permutation(L) ->
    secondary (1x1 group conv, M groups) -> permutation(M) -> BN -> ReLU``,
    exactly the authors' ``get_igc`` (nothing between the two convolutions).

    Args:
        x: ``(batch, H, W, C_in)``.
        filters: output width ``L * M`` in the strict design.
        primary_groups: ``L``; divides ``C_in`` and ``filters``.
        secondary_groups: ``M``; divides ``filters``, and
            ``filters / M`` must be a multiple of ``L`` (complementary
            condition: each secondary branch takes the same number of channels
            from every primary branch; exactly one when ``filters == L * M``).
        activation_fn: activation after BN, or ``None`` (second block of a
            residual unit).

    Returns:
        ``(batch, H / strides, W / strides, filters)``.
    """
    cin = _channels(x, name)
    check_divisible(cin, primary_groups, "primary_groups", name)
    check_divisible(filters, primary_groups, "primary_groups", name)
    check_divisible(filters, secondary_groups, "secondary_groups", name)
    if igcv1_paths_per_pair(filters, primary_groups, secondary_groups) is None:
        allowed = [m for m in range(1, filters + 1) if filters % m == 0 and
                   igcv1_paths_per_pair(filters, primary_groups, m)]
        raise ValueError(
            f"{name}: secondary_groups={secondary_groups} with "
            f"primary_groups={primary_groups} and filters={filters} breaks the "
            f"complementary condition (each secondary branch of "
            f"{filters // secondary_groups} channels must take channels from all "
            f"{primary_groups} primary branches equally); allowed "
            f"secondary_groups: {allowed}.")
    bn = batchnorm_settings or DEFAULT_BATCHNORM
    x = conv(x, filters, kernel_size, strides, primary_groups,
             name=f"{name}_primary")
    x = ChannelPermutation(primary_groups, name=f"{name}_primary_shuffle")(x)
    x = conv(x, filters, 1, 1, secondary_groups, name=f"{name}_secondary")
    x = ChannelPermutation(secondary_groups,
                           name=f"{name}_secondary_shuffle")(x)
    x = batchnorm(x, bn, f"{name}_bn")
    return activation(x, activation_fn, f"{name}_relu")


# --------------------------------------------------------------------- IGCV2
def igcv2_design(in_channels, filters, branch_channels):
    """Linear steps of an IGCV2 block, for :func:`analyse_design`.

    The channel-wise conv and every group 1x1 conv but the last act on
    ``in_channels``; group conv ``l`` has ``in_channels / K_l`` branches; the
    last one widens to ``filters`` with the same branch count; a permutation
    with the previous conv's branch count sits between consecutive convs.
    """
    steps = [("conv", in_channels, in_channels, in_channels)]
    last = len(branch_channels) - 1
    previous_groups = None
    for i, k in enumerate(branch_channels):
        groups = in_channels // k
        if i:
            steps.append(("perm", in_channels, previous_groups))
        steps.append(("conv", in_channels, filters if i == last else in_channels,
                      groups))
        previous_groups = groups
    return steps


def apply_igcv2_block(x, filters, branch_channels, kernel_size=3, strides=1,
                      activation_fn="relu", batchnorm_settings=None,
                      batchnorm_each=False, channelwise_activation=None,
                      require_dense=True, name="igcv2_block"):
    """IGCV2 block: channel-wise conv, then ``L - 1`` group 1x1 convolutions.

    ``channel-wise kxk (stride) -> G_2 -> P -> G_3 -> ... -> G_L -> BN ->
    activation``. Group 1x1 conv ``G_l`` has ``K_l`` input channels per branch
    (``C_in / K_l`` branches); a permutation with ``G_{l-1}``'s branch count
    interleaves consecutive ones; where the width changes, the last conv maps
    ``C_in -> filters`` with the same branch count (RECONSTRUCTED: this rule
    fits the IGCV2 paper's tables, see :mod:`igc_keras.applications.igcv2`).
    With ``prod(K_l) == C`` the composed kernel is dense with exactly one path
    per channel pair (strict complementary condition); the balance condition
    ``K_2 = ... = K_L`` minimises parameters (:mod:`igc_keras.design.balance`).

    Args:
        x: ``(batch, H, W, C_in)``.
        filters: output width.
        branch_channels: ``(K_2, ..., K_L)``, each dividing ``C_in``.
        batchnorm_each: BN after the channel-wise conv and after every group
            conv (MobileNet style) instead of once after the chain.
        channelwise_activation: activation after the channel-wise conv's BN
            (with ``batchnorm_each``).
        require_dense: refuse designs whose composed kernel is not dense.

    Returns:
        ``(batch, H / strides, W / strides, filters)``.
    """
    cin = _channels(x, name)
    branch_channels = tuple(int(k) for k in branch_channels)
    if not branch_channels:
        raise ValueError(f"{name}: `branch_channels` must name at least one "
                         f"group 1x1 convolution; got {branch_channels}.")
    for i, k in enumerate(branch_channels):
        if k < 1 or cin % k or filters % (cin // k):
            allowed = [d for d in range(1, cin + 1) if cin % d == 0 and
                       filters % (cin // d) == 0]
            raise ValueError(
                f"{name}: branch_channels[{i}]={k} must divide the {cin} input "
                f"channels (and give a branch count dividing filters={filters}); "
                f"allowed values: {allowed}.")
    report = analyse_design(igcv2_design(cin, filters, branch_channels))
    if require_dense and not report.dense:
        raise ValueError(
            f"{name}: branch_channels={branch_channels} for {cin} -> {filters} "
            f"channels breaks the complementary condition: only "
            f"{report.density:.1%} of input/output channel pairs are connected. "
            f"The product of branch_channels must reach the width "
            f"(e.g. {_suggest_branch_channels(cin, len(branch_channels))}).")
    bn = batchnorm_settings or DEFAULT_BATCHNORM
    x = conv(x, cin, kernel_size, strides, cin, name=f"{name}_channelwise")
    if batchnorm_each:
        x = batchnorm(x, bn, f"{name}_channelwise_bn")
        x = activation(x, channelwise_activation, f"{name}_channelwise_relu")
    last = len(branch_channels) - 1
    previous_groups = None
    for i, k in enumerate(branch_channels):
        groups = cin // k
        if i:
            x = ChannelPermutation(previous_groups,
                                   name=f"{name}_group{i}_shuffle")(x)
        x = conv(x, filters if i == last else cin, 1, 1, groups,
                 name=f"{name}_group{i + 1}")
        if batchnorm_each and i < last:
            x = batchnorm(x, bn, f"{name}_group{i + 1}_bn")
        previous_groups = groups
    x = batchnorm(x, bn, f"{name}_bn")
    return activation(x, activation_fn, f"{name}_relu")


def _suggest_branch_channels(width, count):
    from igc_keras.design.balance import balanced_branch_channels
    return balanced_branch_channels(width, count + 1)[1:]


# --------------------------------------------------------------------- IGCV3
def igcv3_paths_per_pair(expanded, expansion_groups, projection_groups):
    """Paths per (input, output) pair of an IGCV3 block: ``(min, max)`` or ``None``.

    The permutation interleaves the ``G_1`` expansion branches; a projection
    branch takes ``K = E / G_2`` consecutive interleaved channels, which reach
    every expansion branch iff ``K >= G_1`` (the composed kernel is dense).
    When ``G_1`` divides ``K`` every pair is joined by ``K / G_1`` paths (the
    loose complementary condition with super-channels of that size);
    otherwise the counts differ by one between pairs (still dense). Returns
    ``None`` when the composed kernel is not dense.
    """
    if expanded % projection_groups:
        return None
    k = expanded // projection_groups
    if k < expansion_groups:
        return None
    return k // expansion_groups, -(-k // expansion_groups)


def apply_igcv3_block(x, filters, expansion, strides=1, expansion_groups=2,
                      projection_groups=2, shortcut=None,
                      batchnorm_settings=None, name="igcv3_block"):
    """IGCV3 block, as in the authors' released code.

    ``1x1 group conv (G_1, expansion to round(t * C_in)) -> BN (no activation)
    -> permutation(G_1) -> depthwise 3x3 (stride) -> BN -> ReLU6 ->
    1x1 group conv (G_2, projection, linear) -> BN -> + identity``.
    The identity shortcut is used where shapes allow (stride 1, ``C_in ==
    filters``), which in the released tables is every block but the first of
    a stage. No permutation follows the projection (the released code never
    enabled it).

    Args:
        x: ``(batch, H, W, C_in)``.
        filters: output width; divisible by ``projection_groups``.
        expansion: ``t``; the expansion width is ``round(t * C_in)``.
        expansion_groups: ``G_1`` (2 in the released model); divides ``C_in``.
        projection_groups: ``G_2`` (2 in the released model).
        shortcut: force (``True``/``False``) or infer (``None``) the identity.

    Returns:
        ``(batch, H / strides, W / strides, filters)``.
    """
    cin = _channels(x, name)
    expanded = int(round(expansion * cin))
    check_divisible(cin, expansion_groups, "expansion_groups", name)
    check_divisible(expanded, expansion_groups, "expansion_groups", name)
    check_divisible(filters, projection_groups, "projection_groups", name)
    if igcv3_paths_per_pair(expanded, expansion_groups,
                            projection_groups) is None:
        raise ValueError(
            f"{name}: expansion_groups={expansion_groups} and "
            f"projection_groups={projection_groups} with {expanded} expanded "
            f"channels (expansion={expansion} x {cin}) break the complementary "
            f"condition: each projection branch takes "
            f"{expanded // projection_groups} interleaved channels, fewer than "
            f"the {expansion_groups} expansion branches it must reach; allowed: "
            f"expansion_groups * projection_groups <= {expanded}.")
    auto = strides == 1 and cin == filters
    if shortcut is None:
        shortcut = auto
    elif shortcut and not auto:
        raise ValueError(
            f"{name}: shortcut=True needs strides=1 and filters == input "
            f"channels; got strides={strides}, {cin} -> {filters}.")
    bn = batchnorm_settings or DEFAULT_BATCHNORM
    inputs = x
    x = conv(x, expanded, 1, 1, expansion_groups, name=f"{name}_expand")
    x = batchnorm(x, bn, f"{name}_expand_bn")
    if expansion_groups > 1:
        x = ChannelPermutation(expansion_groups, name=f"{name}_shuffle")(x)
    x = conv(x, expanded, 3, strides, expanded, name=f"{name}_depthwise")
    x = batchnorm(x, bn, f"{name}_depthwise_bn")
    x = activation(x, "relu6", f"{name}_depthwise_relu")
    x = conv(x, filters, 1, 1, projection_groups, name=f"{name}_project")
    x = batchnorm(x, bn, f"{name}_project_bn")
    if shortcut:
        x = keras.layers.Add(name=f"{name}_add")([inputs, x])
    return x
