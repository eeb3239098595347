/// <reference types="vitest/config" />
// `npm run dev` serves the dashboard with /api and /v1 proxied to a local gateway
// (APIHUB_URL, default http://127.0.0.1:8000); `npm run build` writes dist/ for the gateway to serve at `/`.
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const gateway = process.env.APIHUB_URL ?? 'http://127.0.0.1:8000';

export default defineConfig({
  base: '/',
  plugins: [react()],
  server: {
    proxy: {
      '/api': gateway,
      '/v1': gateway,
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 1200,
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['src/test/setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
    css: false,
    testTimeout: 20000,
  },
});
