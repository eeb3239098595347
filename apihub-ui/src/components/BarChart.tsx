// A light SVG bar chart: no chart library, so the bundle stays small. Heights are proportions
// for drawing only; every label shows the exact figure it was given.
import { Empty, theme } from 'antd';

export interface Bar {
  /** Short label under the bar, e.g. `11-25`. */
  label: string;
  /** The size to draw (may come from a decimal: drawing only, never shown). */
  value: number;
  /** The exact figure shown in the tooltip. */
  display: string;
}

interface Props {
  data: Bar[];
  height?: number;
  emptyText?: string;
  ariaLabel?: string;
}

export function BarChart({ data, height = 180, emptyText, ariaLabel }: Props) {
  const { token } = theme.useToken();
  if (data.length === 0 || data.every((d) => !(d.value > 0))) {
    return <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={emptyText} />;
  }
  const max = Math.max(...data.map((d) => (Number.isFinite(d.value) ? d.value : 0)), 0) || 1;
  const slot = 24;
  const width = data.length * slot;
  const labelEvery = Math.max(1, Math.ceil(data.length / 10));
  return (
    <svg
      role="img"
      aria-label={ariaLabel}
      viewBox={`0 0 ${width} ${height + 20}`}
      preserveAspectRatio="none"
      style={{ width: '100%', height: height + 20, display: 'block' }}
    >
      <line x1={0} x2={width} y1={height} y2={height} stroke={token.colorBorder} strokeWidth={1} />
      {data.map((d, i) => {
        const h = d.value > 0 ? Math.max(2, (d.value / max) * (height - 8)) : 0;
        return (
          <g key={`${d.label}-${i}`}>
            <rect
              x={i * slot + 4}
              y={height - h}
              width={slot - 8}
              height={h}
              rx={2}
              fill={token.colorPrimary}
              data-value={d.display}
            >
              <title>{`${d.label}: ${d.display}`}</title>
            </rect>
            {i % labelEvery === 0 ? (
              <text x={i * slot + slot / 2} y={height + 14} textAnchor="middle" fontSize={9} fill={token.colorTextSecondary}>
                {d.label}
              </text>
            ) : null}
          </g>
        );
      })}
    </svg>
  );
}
