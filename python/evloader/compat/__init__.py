# SPDX-License-Identifier: Apache-2.0
"""Metavision's module paths, for code that ports by changing imports only.

| metavision import | evloader import |
|---|---|
| ``metavision_ml.data`` | ``evloader.compat.metavision_ml.data`` (or ``evloader.data``) |
| ``metavision_ml.data.box_processing`` | ``evloader.compat.metavision_ml.data.box_processing`` |
| ``metavision_ml.data.sequential_dataset`` | ``evloader.compat.metavision_ml.data.sequential_dataset`` |
| ``metavision_ml.data.sequential_dataset_common`` | ``evloader.compat.metavision_ml.data.sequential_dataset_common`` |
| ``metavision_ml.data.cd_processor_dataset`` | ``evloader.compat.metavision_ml.data.cd_processor_dataset`` |
| ``metavision_ml.data.scheduler`` | ``evloader.compat.metavision_ml.data.scheduler`` |
| ``metavision_ml.preprocessing`` | ``evloader.compat.metavision_ml.preprocessing`` (or ``evloader.preprocessing``) |
| ``metavision_ml.detection_tracking.display_frame`` | ``evloader.compat.metavision_ml.detection_tracking.display_frame`` |
| ``metavision_core.event_io`` | ``evloader.compat.metavision_core.event_io`` |

Each module re-exports evloader's implementation; nothing here has behaviour of its own.
"""
