"""The course's blackboard: small worlds and widgets that the module notebooks import.

Each module notebook keeps its prose and short cells in the notebook and its longer code
here (``from lessons import cap``), as the house style asks: the notebook shows a value
after each small definition, the module holds what would not fit in a cell. Nothing here
is needed by the labs or the grader.
"""
