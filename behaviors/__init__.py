"""py_trees behaviours and trees of the supervisor (installed as ``aseptic_cell.behaviors``).

* :mod:`.base`   device actions, conditions, interlock guards (lifecycle discipline:
  ``__init__`` only configures, ``initialise`` sends, ``update`` polls and never blocks,
  ``terminate(INVALID)`` cancels and leaves the device safe);
* :mod:`.trees`  one factory per tree (:data:`.trees.TREE_FACTORIES`), and the batch
  procedure composed per recipe (:func:`.trees.batch_procedure`).
"""
