// A response status, coloured by class: 2xx green, 4xx orange, 5xx red, 499 (the client left) grey.
import { Tag } from 'antd';

export function StatusTag({ status }: { status: number }) {
  const color = status >= 200 && status < 300 ? 'green' : status === 499 ? 'default' : status >= 500 ? 'red' : 'orange';
  return <Tag color={color}>{status}</Tag>;
}
