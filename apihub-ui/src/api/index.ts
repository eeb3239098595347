// Every server call of the dashboard, by area.
export * as authApi from './auth';
export * as budgetsApi from './budgets';
export * as channelsApi from './channels';
export * as creditApi from './credit';
export * as keysApi from './keys';
export * as pricesApi from './prices';
export * as rechargeApi from './recharge';
export * as redemptionApi from './redemption';
export * as requestsApi from './requests';
export * as routesApi from './routes';
export * as statsApi from './stats';
export * as usersApi from './users';
export { ApiError, errorMessage } from './errors';
export { session } from './session';
export type { Schemas } from './client';
