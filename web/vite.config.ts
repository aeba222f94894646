/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react-swc";
import tailwindcss from "@tailwindcss/vite";

// `npm run dev` proxies /api (REST and the /api/ws WebSocket) to a running `albatross up`.
const apiTarget = process.env.ALBATROSS_API_TARGET ?? "http://127.0.0.1:8080";

export default defineConfig({
  // The issue asks for the SWC React plugin; its hint to switch to the Oxc one is noise here.
  plugins: [react({ disableOxcRecommendation: true }), tailwindcss()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // Hashed file names under assets/: the gateway may cache them for a year.
    assetsDir: "assets",
  },
  server: {
    proxy: {
      "/api": { target: apiTarget, ws: true, changeOrigin: false },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
