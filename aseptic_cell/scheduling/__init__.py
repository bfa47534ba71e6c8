"""ISA-88 allocation and arbitration for many patient batches in one cell.

``resources`` (the cell's common resources), ``process`` (the master recipe for scheduling),
``arbiter`` (allocation and arbitration), ``admission`` (a batch is admitted only if its whole
run fits) and ``simulate`` (a discrete-event model of the cell over days). ROS-free; time is
always passed in (seconds on the caller's clock).
"""
