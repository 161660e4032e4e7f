"""Input sharding between the input pipelines of a distribution strategy."""


def shard_dataset(dataset, input_context):
    """This pipeline's shard of ``dataset``: every
    ``input_context.num_input_pipelines``-th element from
    ``input_context.input_pipeline_id``; the whole dataset without a
    ``tf.distribute.InputContext`` or with one pipeline."""
    if input_context and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    return dataset
