"""The reference network: the bundled Pima data, the model builder and the trainer.

:mod:`.data` is numpy/pyarrow only; :mod:`.model` and :mod:`.train` import Keras lazily.
"""
