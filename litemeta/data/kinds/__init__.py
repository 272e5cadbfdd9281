"""One module per kind of dataset (:class:`litemeta.data.registry.DatasetKind`): the
built-in emoji set, class folders, ORBIT, Meta-Dataset records, VTAB. Every module here is
imported by :func:`litemeta.data.registry.discover_datasets`, and each kind registers
itself by its name, the ``data.dataset`` of a config."""
