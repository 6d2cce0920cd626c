"""``llem run``: the campaign loop on top of the ContainerManager, the journal and the decision."""
