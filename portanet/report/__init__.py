"""The HTML report of an exported model (``portanet report``) and the chart data the export
stores for it. Runtime side: no TensorFlow (matplotlib and Jinja2 come with ``[report]``)."""

from portanet.report.build import read_bench, report_context, write_report
from portanet.report.payload import chart_payload

__all__ = ["chart_payload", "read_bench", "report_context", "write_report"]
