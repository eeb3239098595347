// A light SVG bar chart: no chart library, so the bundle stays small. Heights are proportions
// for drawing only; every label shows the exact figure it was given. Drawn at the container's
// real width (no stretching), with a value axis (0 and the highest figure, exactly), the dates
// under the bars, and each bar's figure above it when there is room.
import { Empty, theme } from 'antd';
import { useEffect, useRef, useState } from 'react';

export interface Bar {
  /** Short label under the bar, e.g. `14 Jun`. */
  label: string;
  /** The size to draw (may come from a decimal: drawing only, never shown). */
  value: number;
  /** The exact figure shown above the bar and in the tooltip. */
  display: string;
}

interface Props {
  data: Bar[];
  height?: number;
  emptyText?: string;
  ariaLabel?: string;
  /** The unit after the axis' figures, e.g. `credits`. */
  unit?: string;
}

const AXIS = 64; // room on the left for the value axis' labels
const BOTTOM = 22; // room under the bars for their labels
const TOP = 16; // room above the highest bar for its figure
const FONT = 11;

/** The width of the element, followed as it changes (600 where nothing can be measured). */
function useWidth() {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(600);
  useEffect(() => {
    const el = ref.current;
    if (!el) return undefined;
    const measure = () => {
      if (el.clientWidth > 0) setWidth(el.clientWidth);
    };
    measure();
    if (typeof ResizeObserver === 'undefined') return undefined;
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return { ref, width };
}

export function BarChart({ data, height = 200, emptyText, ariaLabel, unit }: Props) {
  const { token } = theme.useToken();
  const { ref, width } = useWidth();
  if (data.length === 0 || data.every((d) => !(d.value > 0))) {
    return <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={emptyText} />;
  }
  const values = data.map((d) => (Number.isFinite(d.value) && d.value > 0 ? d.value : 0));
  const max = Math.max(...values) || 1;
  const top = data[values.indexOf(max)];
  const plotWidth = Math.max(40, width - AXIS);
  const plotHeight = height - BOTTOM - TOP;
  const slot = plotWidth / data.length;
  const barWidth = Math.max(2, Math.min(40, slot * 0.7));
  // Labels need about 6.5 px per character; show every n-th so they never overlap.
  const longest = Math.max(...data.map((d) => d.label.length));
  const labelEvery = Math.max(1, Math.ceil((longest * 6.5 + 8) / slot));
  const valueRoom = Math.max(...data.map((d) => d.display.length)) * 6.5 + 4;
  const showValues = valueRoom <= slot;
  const y = (v: number) => TOP + plotHeight - (v / max) * plotHeight;
  return (
    <div ref={ref} style={{ width: '100%', overflow: 'hidden' }}>
      <svg role="img" aria-label={ariaLabel} width={width} height={height} style={{ display: 'block' }}>
        <g fontSize={FONT} fill={token.colorTextSecondary}>
          <line x1={AXIS} x2={width} y1={y(0)} y2={y(0)} stroke={token.colorBorder} />
          <line x1={AXIS} x2={width} y1={y(max)} y2={y(max)} stroke={token.colorBorderSecondary} strokeDasharray="3 3" />
          <line x1={AXIS} x2={AXIS} y1={TOP} y2={y(0)} stroke={token.colorBorder} />
          <text x={AXIS - 6} y={y(0) + 4} textAnchor="end" data-testid="axis-zero">
            0
          </text>
          <text x={AXIS - 6} y={y(max) + 4} textAnchor="end" data-testid="axis-max">
            <title>{unit ? `${top.display} ${unit}` : top.display}</title>
            {top.display}
          </text>
        </g>
        {data.map((d, i) => {
          const v = values[i];
          const h = v > 0 ? Math.max(2, (v / max) * plotHeight) : 0;
          const cx = AXIS + i * slot + slot / 2;
          return (
            <g key={`${d.label}-${i}`}>
              <rect x={cx - barWidth / 2} y={y(0) - h} width={barWidth} height={h} rx={2} fill={token.colorPrimary} data-value={d.display}>
                <title>{`${d.label}: ${d.display}${unit ? ` ${unit}` : ''}`}</title>
              </rect>
              {showValues && v > 0 ? (
                <text x={cx} y={y(0) - h - 4} textAnchor="middle" fontSize={FONT - 1} fill={token.colorText} data-testid="bar-value">
                  {d.display}
                </text>
              ) : null}
              {i % labelEvery === 0 ? (
                <text x={cx} y={height - 6} textAnchor="middle" fontSize={FONT} fill={token.colorTextSecondary}>
                  {d.label}
                </text>
              ) : null}
            </g>
          );
        })}
      </svg>
    </div>
  );
}
