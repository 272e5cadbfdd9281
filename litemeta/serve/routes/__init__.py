"""The web app's routes, one ``APIRouter`` per group: the page and its files
(:mod:`.pages`), recognisers and teaching (:mod:`.recognisers`), classes (:mod:`.classes`),
examples (:mod:`.examples`), and predicting with and exporting a taught recogniser
(:mod:`.predict`). What they share is :class:`~.state.Serving`, reached through the
:data:`~.state.ServingState` dependency."""
