// Ready-to-run calls for the three dialects the gateway speaks, with this gateway's base URL:
// OpenAI (Bearer key, /v1), Anthropic (x-api-key, /v1/messages) and Gemini (x-goog-api-key,
// /v1beta/models/{model}:generateContent). One key works with all three.

export const KEY_PLACEHOLDER = 'YOUR_APIHUB_KEY';

export type Dialect = 'openai' | 'anthropic' | 'gemini';
export const DIALECTS: Dialect[] = ['openai', 'anthropic', 'gemini'];

export interface Snippet {
  key: string;
  label: string;
  code: string;
}

/** OpenAI clients: the base URL ends in /v1. */
export function snippets(baseUrl: string, model: string): Snippet[] {
  const v1 = `${baseUrl}/v1`;
  return [
    {
      key: 'curl',
      label: 'curl',
      code: `curl ${v1}/chat/completions \\
  -H "Authorization: Bearer ${KEY_PLACEHOLDER}" \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "${model}",
    "messages": [{"role": "user", "content": "Hello!"}]
  }'`,
    },
    {
      key: 'python',
      label: 'Python (openai)',
      code: `# pip install openai
from openai import OpenAI

client = OpenAI(base_url="${v1}", api_key="${KEY_PLACEHOLDER}")
reply = client.chat.completions.create(
    model="${model}",
    messages=[{"role": "user", "content": "Hello!"}],
)
print(reply.choices[0].message.content)
print(reply.usage)`,
    },
    {
      key: 'js',
      label: 'JavaScript (openai)',
      code: `// npm install openai
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: '${v1}', apiKey: '${KEY_PLACEHOLDER}' });
const reply = await client.chat.completions.create({
  model: '${model}',
  messages: [{ role: 'user', content: 'Hello!' }],
});
console.log(reply.choices[0].message.content, reply.usage);`,
    },
  ];
}

/** Anthropic clients: the base URL is the gateway itself (the SDK adds /v1/messages). */
export function anthropicSnippets(baseUrl: string, model: string): Snippet[] {
  return [
    {
      key: 'curl',
      label: 'curl',
      code: `curl ${baseUrl}/v1/messages \\
  -H "x-api-key: ${KEY_PLACEHOLDER}" \\
  -H "anthropic-version: 2023-06-01" \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "${model}",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Hello!"}]
  }'`,
    },
    {
      key: 'python',
      label: 'Python (anthropic)',
      code: `# pip install anthropic
import anthropic

client = anthropic.Anthropic(base_url="${baseUrl}", api_key="${KEY_PLACEHOLDER}")
reply = client.messages.create(
    model="${model}",
    max_tokens=1024,
    messages=[{"role": "user", "content": "Hello!"}],
)
print(reply.content[0].text)
print(reply.usage)`,
    },
    {
      key: 'js',
      label: 'JavaScript (@anthropic-ai/sdk)',
      code: `// npm install @anthropic-ai/sdk
import Anthropic from '@anthropic-ai/sdk';

const client = new Anthropic({ baseURL: '${baseUrl}', apiKey: '${KEY_PLACEHOLDER}' });
const reply = await client.messages.create({
  model: '${model}',
  max_tokens: 1024,
  messages: [{ role: 'user', content: 'Hello!' }],
});
console.log(reply.content[0].text, reply.usage);`,
    },
  ];
}

/** Gemini clients: the base URL is the gateway itself (the SDK adds /v1beta/models/…). */
export function geminiSnippets(baseUrl: string, model: string): Snippet[] {
  return [
    {
      key: 'curl',
      label: 'curl',
      code: `curl "${baseUrl}/v1beta/models/${model}:generateContent" \\
  -H "x-goog-api-key: ${KEY_PLACEHOLDER}" \\
  -H "Content-Type: application/json" \\
  -d '{
    "contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]
  }'`,
    },
    {
      key: 'python',
      label: 'Python (google-genai)',
      code: `# pip install google-genai
from google import genai
from google.genai import types

client = genai.Client(
    api_key="${KEY_PLACEHOLDER}",
    http_options=types.HttpOptions(base_url="${baseUrl}"),
)
reply = client.models.generate_content(model="${model}", contents="Hello!")
print(reply.text)
print(reply.usage_metadata)`,
    },
    {
      key: 'js',
      label: 'JavaScript (@google/genai)',
      code: `// npm install @google/genai
import { GoogleGenAI } from '@google/genai';

const client = new GoogleGenAI({ apiKey: '${KEY_PLACEHOLDER}', httpOptions: { baseUrl: '${baseUrl}' } });
const reply = await client.models.generateContent({ model: '${model}', contents: 'Hello!' });
console.log(reply.text, reply.usageMetadata);`,
    },
  ];
}

export function dialectSnippets(dialect: Dialect, baseUrl: string, model: string): Snippet[] {
  if (dialect === 'anthropic') return anthropicSnippets(baseUrl, model);
  if (dialect === 'gemini') return geminiSnippets(baseUrl, model);
  return snippets(baseUrl, model);
}
