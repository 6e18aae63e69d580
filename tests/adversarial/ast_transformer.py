"""An IPython AST transformer empties every later cell."""
# %% cell
import ast


class Nothing(ast.NodeTransformer):
    def visit_Module(self, node):
        return ast.Module(body=[ast.Pass()], type_ignores=[])


get_ipython().ast_transformers.append(Nothing())
